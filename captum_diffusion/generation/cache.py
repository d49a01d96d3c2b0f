"""The image cache: images by key, in memory and optionally on disk (lossless PNG + JSON metadata)."""
from __future__ import annotations

import collections
import contextlib
import json
import os
import tempfile
import warnings
from pathlib import Path

import PIL.Image

from captum_diffusion import checks


def _check_writable_dir(directory) -> Path:
    """Create ``directory`` if needed and prove it is writable, else raise ``ValueError`` naming ``cache_dir``."""
    try:
        path = Path(os.fspath(directory)).expanduser()
    except TypeError:
        raise TypeError(f"cache_dir must be a str or os.PathLike, got {type(directory).__name__}") from None
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as error:
        raise ValueError(f"cache_dir {str(path)!r} is not a writable directory: {error}") from error
    return path


def atomic_write(path: Path, write) -> None:
    """Write a file atomically: ``write(file_object)`` into a temporary file beside ``path``, then ``os.replace``."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


class ImageCache:
    """Images by key: always in memory, optionally also on disk.

    On disk each entry is ``<directory>/<key[:2]>/<key>.png`` (lossless RGB PNG) plus ``<key>.json`` (metadata:
    the key, prompt, seed, settings and generator identity). Both files are written atomically (temporary file +
    ``os.replace``) and the JSON is written last, so an interrupted run leaves either a complete entry or none.
    An entry that cannot be read back (corrupt PNG, bad JSON, a key mismatch) is reported with a ``UserWarning``
    and treated as missing, so it is recomputed and overwritten.

    Args:
        directory: where to persist images (created if missing); ``None`` keeps them in memory only. A directory
            that cannot be created or written raises ``ValueError`` here, before any generation.
        max_in_memory: keep at most this many images in memory, dropping the least recently used (they are
            reloaded from ``directory`` when there is one, else generated again); ``None``: no limit.
    """

    def __init__(self, directory=None, max_in_memory: int | None = None):
        self.directory = None if directory is None else _check_writable_dir(directory)
        self.max_in_memory = checks.optional_positive_int(max_in_memory, "max_in_memory")
        self._memory: collections.OrderedDict[str, PIL.Image.Image] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._memory)

    def _paths(self, key: str) -> tuple[Path, Path]:
        folder = self.directory / key[:2]
        return folder / f"{key}.png", folder / f"{key}.json"

    def get(self, key: str) -> PIL.Image.Image | None:
        """The cached RGB image for ``key`` (memory first, then disk), or ``None``."""
        if key in self._memory:
            self._memory.move_to_end(key)
            return self._memory[key]
        if self.directory is None:
            return None
        png, meta = self._paths(key)
        if not meta.exists():
            return None
        try:
            if json.loads(meta.read_text())["key"] != key:
                raise ValueError("metadata belongs to another key")
            with PIL.Image.open(png) as opened:
                opened.load()
                image = opened.convert("RGB")
        except Exception as error:  # noqa: BLE001 - any unreadable entry is recomputed
            warnings.warn(f"image cache entry {png} is unreadable ({error}); it will be regenerated", stacklevel=3)
            return None
        self._remember(key, image)
        return image

    def put(self, key: str, image: PIL.Image.Image, metadata: dict | None = None) -> None:
        """Store ``image`` (RGB) under ``key`` in memory and, with a directory, on disk (PNG + JSON metadata)."""
        self._remember(key, image)
        if self.directory is None:
            return
        png, meta = self._paths(key)
        png.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(png, lambda file: image.save(file, format="PNG"))
        payload = json.dumps({"key": key, **(metadata or {})}, sort_keys=True, indent=1, default=str)
        atomic_write(meta, lambda file: file.write(payload.encode()))

    def _remember(self, key: str, image: PIL.Image.Image) -> None:
        self._memory[key] = image
        self._memory.move_to_end(key)
        while self.max_in_memory is not None and len(self._memory) > self.max_in_memory:
            self._memory.popitem(last=False)

    def clear(self) -> None:
        """Forget the in-memory images (files on disk stay)."""
        self._memory.clear()
