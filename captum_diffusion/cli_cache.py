"""``diffusion-explain cache ls|du|prune DIR``: the command line over ``generation.cache.ImageCache``.

The image cache itself (keys, the publication protocol, pruning) is :mod:`captum_diffusion.generation.cache`; this
module only parses the subcommand and formats what it prints.
"""
from __future__ import annotations

import argparse
import collections
import os
import time
from pathlib import Path

from captum_diffusion import checks


def add_cache_parser(sub) -> None:
    """Add the ``cache`` subcommand (``ls``, ``du``, ``prune``) to ``sub`` (argparse subparsers)."""
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


def run_cache_command(args: argparse.Namespace) -> str:
    """What ``diffusion-explain cache ...`` prints for the parsed ``args``."""
    return cache_command(args.action, args.directory, model=getattr(args, "model", None),
                         older_than=getattr(args, "older_than", None), max_size=getattr(args, "max_size", None))


def cache_folder(directory) -> Path:
    """``directory`` if it is a cache folder, ``directory/cache`` if it is a run folder holding one.

    Raises
    ------
    FileNotFoundError
        When ``directory`` is not a folder.
    """
    path = Path(os.path.expanduser(os.fspath(directory)))
    if not path.is_dir():
        raise FileNotFoundError(f"{str(path)!r} is not a folder")
    return path / "cache" if (path / "cache").is_dir() else path


def cache_command(action: str, directory, *, model: str | None = None, older_than: str | None = None,
                  max_size: str | None = None) -> str:
    """What ``diffusion-explain cache ls|du|prune DIR`` prints.

    Parameters
    ----------
    action : {"ls", "du", "prune"}
        List the images, their disk usage by model, or remove some.
    directory : str or Path
        A cache folder, or a run folder holding ``cache/``.
    model, older_than, max_size : str, optional
        ``prune``'s selection: a substring of the model identity, an age (``"7d"``), a size to fit (``"2GB"``).
    """
    from captum_diffusion.generation.cache import ImageCache, format_bytes, parse_duration, parse_size

    folder = cache_folder(directory)
    if action == "prune":
        cache = ImageCache(folder)
        removed = cache.prune(identity=model, older_than=None if older_than is None else parse_duration(older_than),
                              max_bytes=None if max_size is None else parse_size(max_size))
        left = list(cache.entries())
        return (f"removed {len(removed)} entries ({format_bytes(sum(e.bytes for e in removed))}); "
                f"{len(left)} left ({format_bytes(sum(e.bytes for e in left))}) in {folder}")
    cache = ImageCache(folder, read_only=True)
    entries = sorted(cache.entries(), key=lambda e: e.mtime)
    if action == "du":
        return _disk_usage(cache, entries, folder, format_bytes)
    return _listing(entries, format_bytes)


def _disk_usage(cache, entries, folder: Path, format_bytes) -> str:
    """``cache du``: entries and bytes by model, then the total."""
    by_model = collections.defaultdict(lambda: [0, 0])
    for entry in entries:
        by_model[entry.identity or "(no metadata)"][0] += 1
        by_model[entry.identity or "(no metadata)"][1] += entry.bytes
    lines = [f"{format_bytes(size):>10}  {count:>6} entries  {name}"
             for name, (count, size) in sorted(by_model.items(), key=lambda item: -item[1][1])]
    total = cache.disk_usage()
    return "\n".join([*lines, f"{format_bytes(total):>10}  {len(entries):>6} entries  total in {folder}"])


def _listing(entries, format_bytes) -> str:
    """``cache ls``: one row per image, oldest first."""
    rows = [("written", "size", "model", "seed", "steps", "guidance", "HxW", "prompt")]
    for e in entries:
        s = e.settings
        rows.append((time.strftime("%Y-%m-%d %H:%M", time.localtime(e.mtime)), format_bytes(e.bytes),
                     checks.shortened(e.identity or "?", 40), str(s.get("seed", "")), str(s.get("num_inference_steps", "")),
                     str(s.get("guidance_scale", "")),
                     f"{s['height']}x{s['width']}" if s.get("height") and s.get("width") else "-",
                     "?" if e.prompt is None else repr(e.prompt)))
    widths = [max(len(row[k]) for row in rows) for k in range(7)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[7] for row in rows)
