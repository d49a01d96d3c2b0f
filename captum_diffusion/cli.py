"""``diffusion-explain``: explain prompts from a terminal, keep the run, re-render and show it.

    diffusion-explain explain "a red circle on the left" --seeds 0 1 --out outputs/demo
    diffusion-explain explain --prompts prompts.txt --config run.toml --out outputs/audit
    diffusion-explain report outputs/demo        # re-render report.html from the saved run, no model needed
    diffusion-explain show outputs/demo          # a table: prompt, top words, values

Bad input (a missing model folder, an unknown method, a broken prompt file line, an unwritable --out, settings the
model cannot take) prints one line and exits with code 2, before anything is written. A full disk prints one line
and exits with code 3 (nothing written is lost: rerun the same command to resume). ``diffusion-explain verify DIR``
exits 1 when a saved run is damaged; ``show`` and ``report`` then name the damage and exit 1 too.
"""
from __future__ import annotations

import argparse
import errno
import sys

EXIT_USAGE = 2
#: Exit code of a full disk (or quota): one line naming what was being written and how to resume.
EXIT_DISK_FULL = 3
#: Exit code of ``verify`` / ``show`` / ``report`` on a damaged run (and of ``explain`` when a prompt failed).
EXIT_DAMAGED = 1


def _explain_parser(sub) -> None:
    """Add the ``explain`` subcommand: the prompts, one option per ``RunConfig`` field (:func:`add_config_options`),
    and the options of the run itself (``--out``, ``--config``, ``--quiet``, ``--resume``, ``--force``,
    ``--mlflow``)."""
    from captum_diffusion.runs.tracking import DEFAULT_TRACKING_URI

    p = sub.add_parser("explain", help="explain prompts and save the run (manifest, values, maps, images, report)",
                       description="Explain which words of each prompt shaped the image, where each word lives "
                                   "(DAAM), and optionally which segments answer to which word. Options may also "
                                   "come from --config run.toml (keys = option names); flags override the file.")
    p.add_argument("prompts", nargs="*", help="prompts to explain (or --prompts FILE)")
    p.add_argument("--prompts", dest="prompts_file", metavar="FILE",
                   help="one prompt per line, or JSON lines {\"prompt\": ..., \"seed\": 0 | [0, 1], \"words\": [...]}")
    add_config_options(p)
    p.add_argument("--out", help="the run folder (default: outputs/run)")
    p.add_argument("--config", metavar="TOML", help="a TOML file with any of these options")
    p.add_argument("--quiet", action="store_true", help="no progress bars, no library loading bars or warnings")
    p.add_argument("--resume", action="store_true", help="resume the run in --out (the default when it holds a run "
                                                         "with the same settings)")
    p.add_argument("--force", action="store_true", help="replace the results of a run with other settings in --out")
    p.add_argument("--mlflow", nargs="?", const=DEFAULT_TRACKING_URI, metavar="TRACKING_URI",
                   help="log the run to MLflow: settings as params, summary figures as metrics, the folder as "
                        f"artifacts (default URI: {DEFAULT_TRACKING_URI}, a local file store; needs the mlflow extra)")


def config_options() -> list[tuple[str, dict]]:
    """``(flag, argparse keywords)`` of every ``RunConfig`` field but ``prompts``, derived from the field.

    The flag is the field name with ``-`` for ``_``; the help is the field's ``help`` metadata; the type follows
    the annotation (``int``, ``float``, a tuple: ``nargs="+"``, ``bool``: a switch), and the field's ``cli``
    metadata adds or overrides argparse keywords (``choices``, ``metavar``, ``type``). Every default is ``None``,
    so an option not given leaves a ``--config`` file's value, then the field's default, in place.
    """
    import dataclasses
    import typing

    from captum_diffusion.runs.config import RunConfig

    hints = typing.get_type_hints(RunConfig)
    options = []
    for field in dataclasses.fields(RunConfig):
        if field.name == "prompts":
            continue
        kind = _plain_type(hints[field.name])
        keywords: dict = {"help": field.metadata.get("help"), "default": None}
        if "type" in field.metadata.get("cli", {}):
            pass  # the field's own parser reads one argument
        elif kind is bool:
            keywords["action"] = "store_true"
        elif typing.get_origin(kind) is tuple:
            item = typing.get_args(kind)[0]
            keywords.update(nargs="+", **({"type": item} if item in (int, float) else {}))
        elif kind in (int, float):
            keywords["type"] = kind
        keywords.update(field.metadata.get("cli", {}))
        if "type" in keywords and keywords["type"] not in (int, float):
            keywords["type"] = _argument_type(keywords["type"])
        options.append(("--" + field.name.replace("_", "-"), keywords))
    return options


def _plain_type(hint):
    """``X | None`` -> ``X``."""
    import types
    import typing

    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        rest = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        return rest[0] if len(rest) == 1 else hint
    return hint


def _argument_type(parse):
    """``parse`` as an argparse ``type``: its ``ValueError`` becomes argparse's usage error with the message."""
    def converted(text: str):
        try:
            return parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    converted.__name__ = parse.__name__
    return converted


def add_config_options(parser: argparse.ArgumentParser) -> None:
    """Add one option per ``RunConfig`` field to ``parser`` (see :func:`config_options`)."""
    for flag, keywords in config_options():
        parser.add_argument(flag, **keywords)


def build_parser() -> argparse.ArgumentParser:
    """The ``diffusion-explain`` parser: ``explain``, ``report``, ``show``, ``verify``, ``cache``, ``summary``,
    ``compare`` and ``export``."""
    from captum_diffusion.cli_cache import add_cache_parser
    from captum_diffusion.cli_runs import add_run_parsers

    parser = argparse.ArgumentParser(prog="diffusion-explain", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    _explain_parser(sub)
    report = sub.add_parser("report", help="re-render DIR/report.html from a saved run (no model needed)")
    report.add_argument("directory", metavar="DIR")
    show = sub.add_parser("show", help="print a table of a saved run: prompt, top words, values")
    show.add_argument("directory", metavar="DIR")
    show.add_argument("--top", type=_argument_type(_positive_top), default=3, help="words shown per prompt (default 3)")
    verify = sub.add_parser("verify", help="check a saved run's files against their recorded sha256 and shapes; "
                                           "exit 1 on damage")
    verify.add_argument("directory", metavar="DIR")
    add_cache_parser(sub)
    add_run_parsers(sub)
    return parser


def _positive_top(text: str) -> int:
    """``show --top``: a positive number of words."""
    from captum_diffusion import checks

    try:
        return checks.positive_int(int(text), "--top")
    except ValueError:
        raise ValueError(f"--top must be a positive int, got {text!r}") from None


def config_from_args(args: argparse.Namespace):
    """The ``RunConfig`` and output folder that ``args`` (and ``--config``) describe.

    Flags override the ``--config`` file; prompts are the positional ones, then the file's ``prompts``, then
    ``--prompts FILE``'s. Returns ``(RunConfig, out)``; ``ValueError`` / ``TypeError`` on bad input.
    """
    import dataclasses

    from captum_diffusion.runs.config import PromptSpec, RunConfig, read_config_file, read_prompt_file

    options = read_config_file(args.config) if args.config else {}
    names = [f.name for f in dataclasses.fields(RunConfig) if f.name != "prompts"] + ["out", "prompts_file"]
    options.update({name: getattr(args, name) for name in names if getattr(args, name) is not None})
    prompts = [*args.prompts, *options.pop("prompts", [])]
    prompts = [PromptSpec.from_mapping(p) for p in prompts]
    prompts_file = options.pop("prompts_file", None)
    if prompts_file:
        prompts += read_prompt_file(prompts_file)
    out = options.pop("out", "outputs/run")
    return RunConfig(prompts=tuple(prompts), **options), out


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
    """A plain-text table of a saved run: prompt, status, its ``top`` words by seed-averaged value (each method).

    Parameters
    ----------
    directory : str, os.PathLike or Run
        A saved run's folder, or the loaded run.
    top : int
        Words shown per prompt and method, ``>= 1``.

    Returns
    -------
    str
        One row per prompt and method; a damaged, failed or pending prompt shows its status and error instead.
    """
    from captum_diffusion import checks
    from captum_diffusion.runs.store import Run, load_run

    top = checks.positive_int(top, "top")
    run = directory if isinstance(directory, Run) else load_run(directory)
    done = {p.number: p for p in run.prompts}
    rows = [("prompt", "status", "method", "top words (value)")]
    for number, entry in enumerate(run.manifest["prompts"]):
        result = done.get(number)
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
    """Run ``diffusion-explain`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit code (0; 1 when a
    prompt failed or a saved run is damaged; 2 for bad input, before anything is written; 3 for a full disk)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    try:
        if args.command == "explain":
            return _explain(args, argv)
        if args.command == "report":
            from captum_diffusion.runs import load_run, write_report

            run = load_run(args.directory, images=False)  # the report reads the images from their files
            print(write_report(run))
            return _damage_note(run)
        if args.command == "verify":
            from captum_diffusion.runs.verify import verify_run

            found = verify_run(args.directory)
            print(found.summary())
            return 0 if found.ok else EXIT_DAMAGED
        if args.command == "cache":
            from captum_diffusion.cli_cache import run_cache_command

            print(run_cache_command(args))
            return 0
        if args.command in ("summary", "compare", "export"):
            from captum_diffusion.cli_runs import run_run_command

            print(run_run_command(args))
            return 0
        from captum_diffusion.runs.store import load_run

        run = load_run(args.directory, images=False)
        print(show(run, args.top))
        return _damage_note(run)
    except (ValueError, FileNotFoundError) as error:
        print(f"diffusion-explain: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as error:
        if error.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        print(f"diffusion-explain: error: {disk_full_message(error, args)}", file=sys.stderr)
        return EXIT_DISK_FULL


def disk_full_message(error: OSError, args: argparse.Namespace) -> str:
    """One line for a full disk: the folder, the file being written, and how to go on without losing anything."""
    folder = getattr(args, "out", None) or getattr(args, "directory", None) or "the run folder"
    writing = f"writing {error.filename}" if error.filename else "writing"
    if args.command == "explain":
        then = "free space, then rerun the same command: it resumes, and nothing already written is lost"
    else:
        then = "the previous files are intact; free space, then rerun the command"
    return f"no space left on the device ({errno.errorcode.get(error.errno, error.errno)}) {writing} in {folder}: {then}"


def _damage_note(run) -> int:
    """Name the damaged prompts of a loaded run on stderr; the exit code (0, or 1 when any is damaged)."""
    damaged = [p for p in run.prompts if p.status == "damaged"]
    for result in damaged:
        print(f"diffusion-explain: prompt {result.number} ({result.prompt!r}) is {result.error}; rerun its "
              "`explain` command to redo it from the cache", file=sys.stderr)
    return EXIT_DAMAGED if damaged else 0


def _explain(args: argparse.Namespace, argv: list[str]) -> int:
    """``diffusion-explain explain``: validate, run on this process (one of a launched job or alone), summarise.

    Bad input is refused before diffusers, transformers or the model are imported (reading the options imports
    neither), so it costs a fraction of a second."""
    from captum_diffusion.runs.distributed import OtherRankFailed, is_main_rank, leave_process_group

    try:
        config, out = config_from_args(args)
        _check_mlflow(args)
    except (TypeError, ValueError, FileNotFoundError) as error:
        if not is_main_rank():  # every process of a launched job read the same input: rank 0 reports it
            return EXIT_USAGE
        if isinstance(error, TypeError):  # a wrong type in --config: still the user's input
            raise ValueError(str(error)) from None
        raise
    if args.quiet:
        quiet_libraries()
    from captum_diffusion.runs.execute import explain_run, seconds_since_process_start

    try:  # one process, or each process of `accelerate launch ... -m captum_diffusion explain ...`
        run = explain_run(config, out, command=["diffusion-explain", *argv], force=args.force,
                          progress=not args.quiet, resume=args.resume, startup_seconds=seconds_since_process_start())
    except OtherRankFailed as stopped:  # another process failed and printed its error
        return stopped.exit_code
    finally:
        leave_process_group()
    failed = [p["prompt"] for p in run.manifest["prompts"] if p["status"] == "failed"]
    resumed = run.manifest["counts"].get("prompts_resumed", 0)
    if not args.quiet and is_main_rank():
        if resumed:
            print(f"resumed the run in {run.directory}: {resumed} of {len(run.manifest['prompts'])} prompt(s) were "
                  "already done")
        print(f"saved {len(run.prompts)} prompt(s) to {run.directory} (report: {run.directory / 'report.html'})")
    elif is_main_rank():  # --quiet: the report's path alone
        print(run.directory / "report.html")
    for prompt in failed if is_main_rank() else ():
        print(f"diffusion-explain: prompt {prompt!r} failed; see {run.directory / 'manifest.json'}", file=sys.stderr)
    if args.mlflow is not None and is_main_rank():
        from captum_diffusion.runs.tracking import log_run

        run_id = log_run(run, args.mlflow)
        if not args.quiet:
            print(f"logged to MLflow ({args.mlflow}) as run {run_id}")
    return 1 if failed else 0


def _check_mlflow(args: argparse.Namespace) -> None:
    """``--mlflow``: a valid URI and an installed client, checked before anything is generated (``ValueError``)."""
    if args.mlflow is None:
        return
    from captum_diffusion.runs.tracking import check_tracking

    try:
        check_tracking(args.mlflow)
    except ImportError as error:
        raise ValueError(str(error)) from None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
