"""``diffusion-explain summary | compare | export``: questions across a saved run, and between two runs.

    diffusion-explain summary outputs/audit --word-classes classes.toml
    diffusion-explain compare outputs/unet outputs/gan --out outputs/unet-vs-gan
    diffusion-explain export outputs/audit --format parquet --out audit.parquet

The work is in :mod:`captum_diffusion.runs.summary`, :mod:`~captum_diffusion.runs.compare` and
:mod:`~captum_diffusion.runs.export`; this module only parses the subcommands and formats what they print.
"""
from __future__ import annotations

import argparse
import json

from captum_diffusion.runs.export import FORMATS


def add_run_parsers(sub) -> None:
    """Add the ``summary``, ``compare`` and ``export`` subcommands to ``sub`` (argparse subparsers)."""
    summary = sub.add_parser("summary", help="across a run's prompts: each word's and word class's value, the words "
                                             "the model neglects (with the test used), the least seed-stable prompts")
    summary.add_argument("directory", metavar="RUN")
    summary.add_argument("--word-classes", metavar="TOML", help="word classes, one key per class: colour = [\"red\", "
                         "\"blue\"] (default: the model's own; ShapesWorld ships colour, shape, position, function)")
    summary.add_argument("--method", help="the method summarised (default: the first one run on every prompt)")
    summary.add_argument("--json", action="store_true", help="print JSON instead of tables")
    compare = sub.add_parser("compare", help="two runs of the same prompts side by side: rank agreement, RMSE, the "
                                             "words that moved, images; writes DIR/compare.html and compare.json")
    compare.add_argument("run_a", metavar="RUN_A")
    compare.add_argument("run_b", metavar="RUN_B")
    compare.add_argument("--out", required=True, metavar="DIR", help="the folder for compare.html and compare.json")
    compare.add_argument("--method", help="the method compared (default: the first one both runs ran everywhere)")
    compare.add_argument("--force", action="store_true", help="compare runs whose payoffs (scorer, template) differ")
    export = sub.add_parser("export", help="a run as one long table for pandas / duckdb: prompt, prompt index, "
                                           "seed, method, word, label, position, value, standard error, base value, "
                                           "payoff")
    export.add_argument("directory", metavar="RUN")
    export.add_argument("--format", choices=tuple(FORMATS), help="parquet (needs pyarrow: the parquet extra) or csv "
                                                                 "(default: from --out's suffix, else parquet)")
    export.add_argument("--out", metavar="FILE", help="the file (default: RUN/values.parquet or RUN/values.csv)")


def run_run_command(args: argparse.Namespace) -> str:
    """What ``diffusion-explain summary | compare | export ...`` prints for the parsed ``args``.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed by a parser that :func:`add_run_parsers` extended; ``args.command`` names the subcommand.

    Returns
    -------
    str
        The summary's tables (or JSON), or the path of the page / table written.

    Raises
    ------
    ValueError
        For bad input (naming the option), or ``--format parquet`` without pyarrow.
    """
    if args.command == "summary":
        from captum_diffusion.runs.summary import summarize

        summary = summarize(args.directory, args.word_classes, method=args.method)
        return json.dumps(summary.to_dict(), indent=1) if args.json else summary.to_text()
    if args.command == "compare":
        from captum_diffusion.runs.compare import compare_runs, write_comparison

        comparison = compare_runs(args.run_a, args.run_b, method=args.method, force=args.force)
        page = write_comparison(comparison, args.out)
        overall = comparison.overall
        return (f"{overall['n_prompts']} shared prompt(s), {overall['percent_ranks_aligned']['mean']:.0f}% ranks "
                f"aligned on average; left out: {len(comparison.only_a)} prompt(s) only in A, "
                f"{len(comparison.only_b)} only in B\n{page}")
    from captum_diffusion.runs.export import export_run

    try:
        return str(export_run(args.directory, args.out, format=args.format))
    except ImportError as error:  # parquet without pyarrow: the user's choice of --format, exit code 2
        raise ValueError(str(error)) from None
