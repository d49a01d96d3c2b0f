"""One writer per run folder: the lock a run holds on ``--out`` while it writes.

``explain_run`` takes the lock (``filelock`` on ``DIR/.lock``, an OS lock that a killed process gives back at once)
before it writes anything into the folder, and keeps it to the end. ``DIR/.lock.json`` names the holder: process,
host, start time, command and a digest of its settings. A second run on the same folder then:

- with the same settings (the same command run twice), waits for the first to finish and resumes its run, which
  is then complete: nothing is computed twice, as before the lock;
- with other settings, is refused at once, naming the run that holds the folder, so the two never mix.
"""
from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from captum_diffusion.files import atomic_write

__all__ = ["LOCK_FILES", "RunLock", "RunLocked", "current_holder", "take_lock"]

#: The lock's files in a run folder (a folder holding only these is empty for ``--out``).
LOCK_FILES = (".lock", ".lock.json")


class RunLocked(ValueError):
    """Another run with other settings is writing the folder (the message names it)."""


@dataclass
class RunLock:
    """A held lock on a run folder; :meth:`release` gives it back."""

    folder: Path
    lock: object

    def release(self) -> None:
        """Give the lock back (and remove the holder's note)."""
        try:
            (self.folder / LOCK_FILES[1]).unlink(missing_ok=True)
        finally:
            self.lock.release()


def _holder(folder: Path) -> dict:
    """The note of the run holding ``folder`` (``{}`` when unreadable: it is being written or was removed)."""
    try:
        data = json.loads((folder / LOCK_FILES[1]).read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _describe(holder: dict) -> str:
    """The holder in words."""
    if not holder:
        return "another run"
    command = " ".join(holder.get("command") or []) or "?"
    return (f"process {holder.get('pid')} on {holder.get('host')}, started {holder.get('started')}: "
            f"{command[:200]}")


def take_lock(folder, settings_digest: str, command: list[str]) -> RunLock:
    """Lock the run folder ``folder`` for this run (created when missing).

    Parameters
    ----------
    folder : str or os.PathLike
        The run folder.
    settings_digest : str
        ``runs.verify.settings_digest`` of the run's settings: a holder with the same digest is waited for.
    command : list of str
        This run's command line, written for the next one to read.

    Returns
    -------
    RunLock
        Held; call :meth:`RunLock.release` when the run ends.

    Raises
    ------
    RunLocked
        When a run with other settings holds the folder: names it (process, host, start, command).
    """
    from filelock import FileLock, Timeout

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(folder / LOCK_FILES[0]))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        holder = {}
        for _ in range(20):  # the holder writes its note right after taking the lock
            holder = _holder(folder)
            if holder:
                break
            time.sleep(0.1)
        if holder.get("settings") != settings_digest:
            raise RunLocked(f"--out {str(folder)!r} is being written by another run with other settings "
                            f"({_describe(holder)}); wait for it to finish or choose another folder") from None
        lock.acquire()  # the same run: wait, then resume what it finished
    note = {"pid": os.getpid(), "host": socket.gethostname(), "command": list(command),
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"), "settings": settings_digest}
    atomic_write(folder / LOCK_FILES[1], json.dumps(note).encode())
    return RunLock(folder, lock)


def current_holder(folder) -> str | None:
    """The run writing ``folder`` now, in words, or ``None`` when no run holds its lock (nothing is created).

    Parameters
    ----------
    folder : str or os.PathLike
        A run folder.
    """
    from filelock import FileLock, Timeout

    path = Path(folder) / LOCK_FILES[0]
    if not path.exists():
        return None
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return _describe(_holder(Path(folder)))
    lock.release()
    return None
