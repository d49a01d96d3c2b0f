"""Demo: the embedded ShapesWorld model explains one prompt; the same code as ``diffusion-explain explain``.

    python examples/demo.py                                   # "a red circle on the left" -> outputs/demo
    python examples/demo.py --prompt "a blue square and a yellow triangle" --out outputs/pair --seeds 0 1 2 3

Writes a saved run to ``--out`` (``report.html``, ``manifest.json``, ``prompts/000/...``; see the README) and prints
the words ranked by their seed-averaged exact Shapley value.
"""
from __future__ import annotations

import argparse
import sys

from captum_diffusion.cli import main as cli_main, show


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompt", default="a red circle on the left")
    parser.add_argument("--out", default="outputs/demo", help="the run folder")
    parser.add_argument("--seeds", nargs="+", default=["0", "1"], help="seeds averaged (default 0 1)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    code = cli_main(["explain", args.prompt, "--seeds", *args.seeds, "--out", args.out,
                     *(["--quiet"] if args.quiet else [])])
    if code == 0:
        print(show(args.out, top=10))
    return code


if __name__ == "__main__":
    sys.exit(main())
