"""Writing files so that a reader sees the old file, the whole new one, or nothing: never half a file.

One helper for every file the package writes (the image cache, a saved run, the report). A leaf module: it imports
nothing of the project.

- :func:`write_temporary` writes the bytes into a new temporary file beside the final path, named
  ``.<file>.<host>.<pid>.<random>.tmp`` (:func:`temporary_name`), fsynced, mode 0644 less the umask;
- :func:`atomic_write` then renames it over the final path (``os.replace``), removing it on any failure.

The image cache builds its publication protocol on :func:`write_temporary`: it publishes with ``os.link`` (which
never overwrites) instead of ``os.replace``, and removes the temporaries that killed writers left, reading the host
and process back from the name with :func:`temporary_owner`.

>>> from captum_diffusion.files import atomic_write
>>> atomic_write("run/report.html", "<p>done</p>".encode())  # doctest: +SKIP
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import socket
from pathlib import Path
from typing import BinaryIO, Callable, Union

#: This machine, as written into temporary names: 8 hex digits of the host name's sha256.
HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]

#: What :func:`atomic_write` writes: bytes, or a function that writes into the open binary file.
Content = Union[bytes, Callable[[BinaryIO], object]]


def temporary_name(final: Path) -> Path:
    """A new temporary path beside ``final``: ``.<final name>.<HOST>.<pid>.<8 random hex digits>.tmp``.

    Parameters
    ----------
    final : pathlib.Path
        The path the temporary file will become.

    Returns
    -------
    pathlib.Path
        In ``final``'s folder; hidden (leading dot), so listings of finished files skip it.
    """
    return final.with_name(f".{final.name}.{HOST}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def temporary_owner(name: str) -> tuple[str, int] | None:
    """The ``(host, pid)`` written into a :func:`temporary_name`, or ``None`` when ``name`` is not one.

    Parameters
    ----------
    name : str
        A file name (no folder), e.g. ``".ab12.png.0123abcd.4242.9f8e7d6c.tmp"``.

    Returns
    -------
    tuple of (str, int) or None
        The writer's host (compare with :data:`HOST`) and process id.
    """
    if not (name.startswith(".") and name.endswith(".tmp")):
        return None
    parts = name[:-4].rsplit(".", 3)
    if len(parts) != 4 or not parts[2].isdigit():
        return None
    return parts[1], int(parts[2])


def write_temporary(final: Path, write: Callable[[BinaryIO], object]) -> Path:
    """``write(file)`` into a new temporary file beside ``final``, flushed and fsynced; the file is left there.

    Parameters
    ----------
    final : pathlib.Path
        The path the data is meant for; its folder must exist.
    write : callable
        Called once with the temporary file open for binary writing.

    Returns
    -------
    pathlib.Path
        The temporary file (mode 0644 less the umask), complete on disk. The caller renames or links it into place
        and removes it. On any error in ``write`` it is removed and the error raised.
    """
    path = temporary_name(Path(final))
    handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    return path


def atomic_write(path, content: Content) -> Path:
    """Write a file atomically: a complete temporary file beside ``path``, then ``os.replace`` over ``path``.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write; missing parent folders are created.
    content : bytes or callable
        The file's bytes, or a function called with the open binary file that writes them.

    Returns
    -------
    pathlib.Path
        ``path``. A reader sees the old file or the new one, never part of it; if writing or renaming fails the
        temporary file is removed, ``path`` is left as it was, and the error is raised.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, (bytes, bytearray, memoryview)):
        data = bytes(content)

        def content(file: BinaryIO) -> None:
            file.write(data)
    elif not callable(content):
        raise TypeError(f"content must be bytes or a function that writes into a binary file, got "
                        f"{type(content).__name__}")
    try:
        temporary = write_temporary(path, content)
    except OSError as error:  # a full disk fails in write() or fsync(), which name no file: name the one meant
        if error.filename is None and error.errno is not None:  # an OS error: its message gains the file
            error.filename = str(path)
        raise
    try:
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    return path
