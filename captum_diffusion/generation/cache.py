"""The image cache: images by key, in memory and optionally on disk, verified on every read, shared safely.

On disk each entry is ``<dir>/<key[:2]>/<key>.png`` (lossless RGB PNG; its text chunks hold the key and the pixel
hash) and ``<key>.json`` (metadata: the key, ``image_size`` ``[width, height]``, ``sha256`` of the decoded RGB pixel
bytes, so PNG encoder differences do not matter, then the prompt, generator identity and settings).

Publication protocol: several processes, or machines on a shared filesystem, may write one folder at once; no
locks, only ``link`` / ``unlink``, which are atomic on local filesystems and NFS.

0. If a complete entry exists (step 4 below), use it; the steps repeat from here after a damaged file is removed.
1. Write the PNG whole into a temporary file in the entry's folder (fsynced, mode 0644 less the umask), named
   ``.<file>.<host>.<pid>.<random>.tmp``.
2. Publish it without overwriting: ``os.link(temporary, final)``; ``FileExistsError`` means another writer got
   there first, and its PNG is kept. The first finished image wins and is never replaced.
3. Read back the PNG now at the final path (this writer's or the winner's), check it against its own text chunks
   (key, pixel hash), and write the JSON for *that* image to a temporary file.
4. Publish the JSON the same way. A JSON that matches its PNG marks a complete entry; ``put`` returns the image
   read back from the complete entry, so every process uses the stored image, whoever generated it.

Crash windows: killed before 2, only temporary files remain (removed by the first ``ImageCache`` of a later
process that opens the folder: those of a dead pid on this host, and any older than 10 minutes). Killed between
2 and 4, a PNG without a JSON remains: readers treat it as missing, and the next writer of that key adopts it in
step 3 (it was linked whole and checks itself) and adds the JSON. After 4 the entry is complete.

A read checks the JSON (parses, same key) and the PNG (decodes, same size and pixel hash as the JSON says). On any
mismatch it warns, naming the file and what did not match, removes the entry and reports it missing, so it is
regenerated: JSON first, so the entry is uncommitted before its PNG goes (a damaged PNG left alone without a JSON
fails its own check in step 3 and is never adopted); each file only if it is still the one that was checked
(device, inode, size, mtime). Limits: while several processes repair the *same damaged* entry at once, a
microsecond window remains in which one of them could use an image that another then replaces; a writer stalled
for over 10 minutes between steps 1 and 2 may find its temporary file cleaned up (its disk cache then turns off,
as below); a process whose disk cache is off no longer coordinates with the others.

Ownership: a writable ``ImageCache`` marks its folder with ``CACHEDIR.TAG`` (the Cache Directory Tagging
convention, which backup tools also honour). :meth:`ImageCache.prune` removes files only from a folder so marked,
or from an older cache recognised by its structure (only two-character sub-folders holding ``<key>.png`` /
``<key>.json`` files, keys of 64 hex digits starting with the sub-folder's name, and the cache's temporary files); that folder is
then marked. A folder holding anything else is refused, so a user's file named like an entry is never pruned.

Trust model: the cache detects accidents (truncated, swapped, half-written or bit-flipped files: each entry's
pixel hash is checked on every read), not tampering. Whoever can write the folder can replace an image *and* its
recorded pixel hash, and the cache then serves the new image; keep the cache where only trusted users write. A run
folder records the sha256 of every file it wrote (``checksums.json``), so a saved run's images are checked again
by ``diffusion-explain verify``.

If writing fails (a full disk, a folder made read-only), ``put`` warns once and turns the disk cache off for this
``ImageCache``: images stay in memory and the run goes on. Filesystems without hard links (FAT, some FUSE or SMB
mounts) publish by check-then-rename, which is safe for one writer at a time only.
"""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import datetime
import errno
import hashlib
import json
import os
import re
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import PIL.Image
from PIL.PngImagePlugin import PngInfo

from captum_diffusion import checks, files
from captum_diffusion.files import atomic_write, temporary_owner  # noqa: F401 - atomic_write: its old home

#: This machine's tag in temporary names.
_HOST = files.HOST
#: Steps 1 and 3 of the publication protocol write through this module global (tests replace it to fill the disk).
_write_temporary = files.write_temporary

STALE_TEMPORARY_SECONDS = 600.0  # a temporary file is written and linked in milliseconds: older ones are leftovers
_NO_HARD_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS}
_CLEANED: set[Path] = set()  # folders whose stale temporaries this process removed (once: a big folder is slow to list)
_ENTRY_FIELDS = ("key", "prompt", "generator", "image_size", "sha256")


class Mismatch(ValueError):
    """A cache entry that is not what its metadata says."""


def _check_dir(directory, *, writable: bool = True) -> Path:
    """``directory`` as an absolute path (resolved once); with ``writable`` created if needed and proven writable,
    else it must exist. Raises ``ValueError`` naming ``cache_dir``."""
    try:
        text = os.fspath(directory)
    except TypeError:
        raise TypeError(f"cache_dir must be a str or os.PathLike, got {type(directory).__name__}") from None
    if not str(text).strip():
        raise ValueError(f"cache_dir must name a folder (None: memory only), got {directory!r}")
    path = Path(os.path.abspath(os.path.expanduser(text)))
    if not writable:
        if not path.is_dir():
            raise FileNotFoundError(f"cache_dir {str(path)!r} is not a folder")
        return path
    try:
        path.mkdir(parents=True, exist_ok=True)
        os.unlink(_write_temporary(path / ".write-test", lambda file: None))
    except OSError as error:
        raise ValueError(f"cache_dir {str(path)!r} is not a writable directory: {error}") from error
    return path


def _publish(temporary: Path, final: Path) -> None:
    """Make ``temporary`` appear at ``final`` unless a file is there already (then keep that one)."""
    try:
        os.link(temporary, final)
    except FileExistsError:
        pass
    except OSError as error:  # no hard links on this filesystem: check, then rename (one writer at a time only)
        if error.errno not in _NO_HARD_LINKS:
            raise
        if not final.exists():
            os.replace(temporary, final)


def _stat(path) -> os.stat_result | None:
    """``os.stat`` of a path or ``os.DirEntry``, ``None`` if it is missing (removed meanwhile)."""
    try:
        return path.stat() if isinstance(path, os.DirEntry) else os.stat(path)
    except FileNotFoundError:
        return None


def _file_id(path: Path):
    """What identifies this version of a file (device, inode, size, mtime), or ``None`` if it is missing."""
    s = _stat(path)
    return None if s is None else (s.st_dev, s.st_ino, s.st_size, s.st_mtime_ns)


def _discard(path: Path, file_id) -> None:
    """Remove ``path`` if it is still the version ``file_id`` (not one another writer put there since)."""
    if file_id is not None and _file_id(path) == file_id:
        with contextlib.suppress(OSError):
            os.unlink(path)


def pixel_hash(image: PIL.Image.Image) -> str:
    """sha256 of the decoded RGB pixel bytes (independent of how the PNG was encoded)."""
    return hashlib.sha256(image.convert("RGB").tobytes()).hexdigest()


def _read_png(path: Path) -> tuple[PIL.Image.Image, dict]:
    with PIL.Image.open(path) as opened:
        if opened.format != "PNG":
            raise Mismatch(f"{path.name} is a {opened.format} file, not a PNG")
        opened.load()
        return opened.convert("RGB"), dict(opened.text)


def _pid_alive(pid: int) -> bool:
    if os.name != "posix":  # os.kill(pid, 0) would terminate it on Windows: rely on the age rule there
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


@dataclasses.dataclass(frozen=True)
class CacheEntry:
    """One entry on disk, as ``ImageCache.entries()`` lists it (from its JSON; ``None`` where that is unreadable).

    ``identity`` is the generator (model) identity, ``settings`` the rest of the metadata (seed,
    num_inference_steps, guidance_scale, height, width, device, dtype, versions), ``bytes`` the size of its files,
    ``mtime`` when it was written (seconds since the epoch)."""

    key: str
    prompt: str | None
    identity: str | None
    settings: dict
    bytes: int
    mtime: float
    files: tuple[Path, ...]


class ImageCache:
    """Images by key: always in memory, optionally also on disk, where several processes may share one folder.

    See the module docstring for the on-disk layout and the publication protocol: every read is verified (an entry
    that does not match its metadata warns and is regenerated), concurrent writers of a key all get the first
    finished image, killed writes leave only temporary files that a later ``ImageCache`` removes, and a write
    failure turns the disk cache off with one warning instead of losing the run. The first ``ImageCache`` of a
    process that opens a folder removes the temporary files that killed writers left there.

    Parameters
    ----------
    directory : str or os.PathLike, optional
        Where to persist images (created if missing; a relative path is made absolute once, here); ``None``
        keeps them in memory only. A directory that cannot be created or written raises ``ValueError`` here,
        before any generation; so does ``""``.
    max_in_memory : int, optional
        Keep at most this many images in memory, dropping the least recently used (they are reloaded from
        ``directory`` when there is one, else generated again); ``None``: no limit.
    read_only : bool
        Only read ``directory`` (it must exist): nothing is written, removed or cleaned up there.
    """

    def __init__(self, directory=None, max_in_memory: int | None = None, *, read_only: bool = False):
        self.read_only = bool(read_only)
        self.directory = None if directory is None else _check_dir(directory, writable=not self.read_only)
        self.max_in_memory = checks.optional_positive_int(max_in_memory, "max_in_memory")
        self.disk_error: OSError | None = None  # why writing to disk was turned off, if it was
        self._memory: collections.OrderedDict[str, PIL.Image.Image] = collections.OrderedDict()
        if self.directory is not None and not self.read_only and owned_cache(self.directory):
            mark_cache(self.directory)
        if self.directory is not None and not self.read_only and self.directory not in _CLEANED:
            self.remove_stale_temporaries()
            _CLEANED.add(self.directory)

    def __len__(self) -> int:
        return len(self._memory)

    def _paths(self, key: str) -> tuple[Path, Path]:
        folder = self.directory / key[:2]
        return folder / f"{key}.png", folder / f"{key}.json"

    # ------------------------------------------------------------------------------------------------ reading
    def get(self, key: str) -> PIL.Image.Image | None:
        """The cached RGB image for ``key`` (memory first, then a verified disk entry), or ``None``."""
        if key in self._memory:
            self._memory.move_to_end(key)
            return self._memory[key]
        image = None if self.directory is None else self._load(key)
        if image is not None:
            self._remember(key, image)
        return image

    def _load(self, key: str) -> PIL.Image.Image | None:
        """The image of the complete, verified entry ``key``; ``None`` if there is none. A damaged entry warns and
        is removed (unless read-only)."""
        png, meta = self._paths(key)
        meta_id = _file_id(meta)
        if meta_id is None:
            return None  # no entry, or a PNG not yet committed
        png_id = _file_id(png)
        try:
            try:
                record = json.loads(meta.read_bytes())
            except ValueError as error:
                raise Mismatch(f"{meta.name} is not valid JSON ({error})") from None
            if not isinstance(record, dict) or record.get("key") != key:
                found = record.get("key") if isinstance(record, dict) else record
                raise Mismatch(f"{meta.name} belongs to another key ({str(found)[:16]}...)")
            if png_id is None:
                raise Mismatch(f"{png.name} is missing")
            image, _ = _read_png(png)
            if list(image.size) != record.get("image_size"):
                raise Mismatch(f"{png.name} is {image.width}x{image.height}, {meta.name} says "
                               f"{record.get('image_size')}")
            if pixel_hash(image) != record.get("sha256"):
                raise Mismatch(f"{png.name}'s pixels do not match the sha256 in {meta.name}")
        except Exception as error:  # noqa: BLE001 - any entry that does not verify is regenerated
            if _file_id(meta) != meta_id:
                return None  # removed (pruned, repaired) by another process while this one read it: not damage
            warnings.warn(f"image cache entry {png} is unreadable or does not match its metadata: {error}; "
                          "it is removed and will be regenerated", stacklevel=3)
            if not self.read_only:
                _discard(meta, meta_id)  # uncommit first
                _discard(png, png_id)
            return None
        return image

    # ------------------------------------------------------------------------------------------------ writing
    def put(self, key: str, image: PIL.Image.Image, metadata: dict | None = None) -> PIL.Image.Image:
        """Store ``image`` (RGB) under ``key``; return the image to use for ``key``: ``image`` itself, or the one
        another process had already published on disk (the first finished entry wins and is never replaced)."""
        if self.directory is not None and not self.read_only and self.disk_error is None:
            try:
                image = self._store(key, image, metadata or {})
            except OSError as error:
                self.disk_error = error
                warnings.warn(f"image cache: writing to {self.directory} failed ({error}); the disk cache is off for "
                              "the rest of this run, images stay in memory only", stacklevel=2)
        self._remember(key, image)
        return image

    def _store(self, key: str, image: PIL.Image.Image, metadata: dict) -> PIL.Image.Image:
        png, meta = self._paths(key)
        png.parent.mkdir(exist_ok=True)
        info = PngInfo()
        info.add_text("key", key)
        info.add_text("sha256", pixel_hash(image))
        temporaries = [_write_temporary(png, lambda file: image.save(file, format="PNG", pnginfo=info))]
        try:
            for _ in range(4):  # twice without damage: publish, then return the complete entry
                stored = self._load(key)
                if stored is not None:  # a complete entry: ours, or the first one finished
                    return stored
                _publish(temporaries[0], png)
                stored = self._read_uncommitted(png, key)
                if stored is not None:
                    record = {"key": key, **metadata, "image_size": list(stored.size), "sha256": pixel_hash(stored)}
                    payload = json.dumps(record, sort_keys=True, indent=1, default=str).encode()
                    temporaries.append(_write_temporary(meta, lambda file: file.write(payload)))
                    _publish(temporaries[-1], meta)
            raise OSError(f"could not publish a verified entry for {key} in {png.parent}")
        finally:
            for temporary in temporaries:
                with contextlib.suppress(OSError):
                    os.unlink(temporary)

    def _read_uncommitted(self, png: Path, key: str) -> PIL.Image.Image | None:
        """The PNG at ``png`` if it checks itself (key and pixel hash in its text chunks), else ``None`` (a damaged
        one is removed with a warning)."""
        png_id = _file_id(png)
        try:
            image, text = _read_png(png)
            if text.get("key") != key or text.get("sha256") != pixel_hash(image):
                raise Mismatch("its key or pixel hash chunk does not match")
        except FileNotFoundError:
            return None
        except Exception as error:  # noqa: BLE001
            warnings.warn(f"image cache entry {png} without metadata is damaged ({error}); it is removed",
                          stacklevel=4)
            _discard(png, png_id)
            return None
        return image

    def _remember(self, key: str, image: PIL.Image.Image) -> None:
        self._memory[key] = image
        self._memory.move_to_end(key)
        while self.max_in_memory is not None and len(self._memory) > self.max_in_memory:
            self._memory.popitem(last=False)

    def clear(self) -> None:
        """Forget the in-memory images (files on disk stay)."""
        self._memory.clear()

    # ------------------------------------------------------------------------------------------- management
    def _folders(self) -> Iterator[Path]:
        if self.directory is None:
            raise ValueError("this ImageCache has no directory")
        yield self.directory
        with os.scandir(self.directory) as found:
            yield from sorted(Path(f.path) for f in found if len(f.name) == 2 and f.is_dir(follow_symlinks=False))

    def remove_stale_temporaries(self, max_age: float = STALE_TEMPORARY_SECONDS) -> list[Path]:
        """Remove temporary files left by killed writes: those of a dead process on this host, and any older than
        ``max_age`` seconds (a live writer's are never that old). Returns what was removed."""
        removed, now = [], time.time()
        for folder in self._folders():
            with os.scandir(folder) as found:
                for item in found:
                    if not (item.name.startswith(".") and item.name.endswith(".tmp") and item.is_file()):
                        continue
                    owner = temporary_owner(item.name)  # (host, pid) of .<file>.<host>.<pid>.<random>.tmp
                    dead = owner is not None and owner[0] == _HOST and not _pid_alive(owner[1])
                    with contextlib.suppress(OSError):
                        if dead or now - item.stat().st_mtime > max_age:
                            os.unlink(item.path)
                            removed.append(Path(item.path))
        return removed

    def entries(self) -> Iterator[CacheEntry]:
        """Every entry on disk (complete or not), in no particular order, described by its JSON metadata (not
        verified: ``get`` does that)."""
        for folder in list(self._folders())[1:]:
            files = collections.defaultdict(list)
            with os.scandir(folder) as found:
                for item in found:
                    stem, dot, suffix = item.name.rpartition(".")
                    if dot and not item.name.startswith(".") and suffix in ("png", "json") and item.is_file():
                        files[stem].append(Path(item.path))
            for key, paths in sorted(files.items()):
                stats = [s for s in map(_stat, paths) if s is not None]
                try:
                    record = json.loads((folder / f"{key}.json").read_bytes())
                    record = record if isinstance(record, dict) else {}
                except (OSError, ValueError):
                    record = {}
                settings = {k: v for k, v in record.items() if k not in _ENTRY_FIELDS}
                yield CacheEntry(key, record.get("prompt"), record.get("generator"), settings,
                                 sum(s.st_size for s in stats), max((s.st_mtime for s in stats), default=0.0),
                                 tuple(sorted(paths)))

    def disk_usage(self) -> int:
        """Bytes of all files in the cache folder (entries and temporary files)."""
        total = 0
        for folder in self._folders():
            with os.scandir(folder) as found:
                stats = [_stat(item) for item in found if item.is_file(follow_symlinks=False)]
            total += sum(s.st_size for s in stats if s is not None)
        return total

    def prune(self, *, identity: str | None = None, older_than=None, max_bytes: int | None = None) -> list[CacheEntry]:
        """Remove entries from disk (and memory); return them, oldest first.

        ``identity`` (a substring of the generator identity, e.g. ``"StableDiffusionPipeline"`` or a hash prefix)
        and ``older_than`` (seconds or a ``timedelta``, by the time the entry was written) select entries; both
        given: entries matching both. With ``max_bytes`` the selected entries (all when nothing else is given) are
        removed oldest first only until the entries on disk total at most ``max_bytes``. At least one argument is
        required. ``older_than`` may also be a duration such as ``"30d"`` (:func:`parse_duration`). Only a folder
        the cache marked as its own, or an older cache recognised by its structure, is pruned (module docstring);
        another folder raises ``ValueError``."""
        if self.read_only:
            raise ValueError("this ImageCache is read-only")
        if identity is not None and (not isinstance(identity, str) or not identity):
            raise ValueError(f"identity must be a non-empty str (a part of the generator identity), got {identity!r}")
        if isinstance(older_than, datetime.timedelta):
            older_than = older_than.total_seconds()
        elif isinstance(older_than, str):  # "30d", as the command line takes it
            older_than = parse_duration(older_than)
        older_than = checks.optional_finite_number(older_than, "older_than", low=0.0)
        max_bytes = None if max_bytes is None else checks.int_at_least(max_bytes, 0, "max_bytes")
        if identity is None and older_than is None and max_bytes is None:
            raise ValueError("prune needs identity (--model), older_than (--older-than) or max_bytes (--max-size); "
                             "to remove everything, delete the folder")
        if not owned_cache(self.directory):
            raise ValueError(f"{str(self.directory)!r} is not an image cache: it has no {MARKER} and holds files a "
                             "cache does not write; prune removes only a cache's own entries")
        mark_cache(self.directory)
        entries = sorted(self.entries(), key=lambda e: e.mtime)
        cutoff = time.time() - (older_than or 0.0)
        chosen = [e for e in entries if (identity is None or identity in (e.identity or ""))
                  and (older_than is None or e.mtime < cutoff)]
        if max_bytes is not None:
            total, within = sum(e.bytes for e in entries), []
            for entry in chosen:
                if total <= max_bytes:
                    break
                within.append(entry)
                total -= entry.bytes
            chosen = within
        for entry in chosen:
            self._memory.pop(entry.key, None)
            for path in sorted(entry.files, key=lambda p: p.suffix != ".json"):  # uncommit first
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
        return chosen


#: The marker file of a cache folder (the Cache Directory Tagging convention) and its required first line.
MARKER = "CACHEDIR.TAG"
MARKER_SIGNATURE = "Signature: 8a477f597d28d172789f06886806bc55"


def _entry_folder_is_own(folder: os.DirEntry) -> bool:
    """Whether a two-character sub-folder holds only entry files named after it and temporary files."""
    with os.scandir(folder.path) as found:
        for item in found:
            stem, _, suffix = item.name.rpartition(".")
            own = (item.is_file(follow_symlinks=False) and suffix in ("png", "json") and stem.startswith(folder.name)
                   and re.fullmatch("[0-9a-f]{64}", stem) is not None)
            if not own and temporary_owner(item.name) is None:
                return False
    return True


def owned_cache(directory) -> bool:
    """Whether ``directory`` is an image cache: marked with :data:`MARKER`, or shaped like one (module docstring;
    an empty folder counts)."""
    directory = Path(directory)
    try:
        if (directory / MARKER).read_text(errors="replace").startswith(MARKER_SIGNATURE):
            return True
    except OSError:
        pass
    try:
        with os.scandir(directory) as found:
            for item in found:
                if item.name == MARKER or temporary_owner(item.name) is not None:
                    continue
                if not (len(item.name) == 2 and item.is_dir(follow_symlinks=False) and _entry_folder_is_own(item)):
                    return False
    except OSError:
        return False
    return True


def mark_cache(directory) -> None:
    """Write :data:`MARKER` into ``directory`` unless it is there (a failure to write it is ignored: the cache still
    works, and :func:`owned_cache` recognises its structure)."""
    path = Path(directory) / MARKER
    if path.exists():
        return
    with contextlib.suppress(OSError):
        atomic_write(path, (f"{MARKER_SIGNATURE}\n# This file marks an image cache of diffusion-explain "
                            "(captum_diffusion.generation.cache); `diffusion-explain cache prune` only prunes folders "
                            "that hold it.\n").encode())


# ------------------------------------------------------------------------------------ the `cache` command
_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9, "t": 10**12,
          "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_SECONDS = {"": 1, "s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def _amount(text: str, units: dict, what: str, example: str) -> float:
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
    if match is None or match.group(2).lower() not in units:
        raise ValueError(f"{what} must be a number with a unit ({', '.join(u for u in units if u)}), "
                         f"e.g. {example}; got {text!r}")
    return float(match.group(1)) * units[match.group(2).lower()]


def parse_size(text: str) -> int:
    """``"2GB"`` -> 2_000_000_000 bytes (B, KB, MB, GB, TB: powers of 1000; KiB, MiB, GiB, TiB: of 1024)."""
    return int(_amount(text, _UNITS, "a size", "500MB or 2GB"))


def parse_duration(text: str) -> float:
    """``"7d"`` -> seconds (s, m or min, h, d, w; a plain number is seconds)."""
    return _amount(text, _SECONDS, "a duration", "90m, 12h or 7d")


def format_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def __getattr__(name: str):
    """``cache_command`` / ``cache_folder`` moved to ``captum_diffusion.cli_cache`` (kept here, deprecated, for one
    release)."""
    if name in ("cache_command", "cache_folder"):
        import importlib  # the CLI is above this module: only this deprecated alias reaches up to it

        cli_cache = importlib.import_module("captum_diffusion.cli_cache")
        warnings.warn(f"captum_diffusion.generation.cache.{name} moved to captum_diffusion.cli_cache.{name}",
                      DeprecationWarning, stacklevel=2)
        return getattr(cli_cache, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
