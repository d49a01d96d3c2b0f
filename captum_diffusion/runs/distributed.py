"""Ranks of a run: one process (plain ``python``) or many (``accelerate launch`` / ``torchrun``), one code path.

A run's work is split between the processes of the current ``accelerate.PartialState``. They meet at *phase
boundaries* (:meth:`Ranks.phase`): every rank sends a small record (ok or failed with its error, plus a payload)
to every other rank (``accelerate.utils.gather_object``, an all-gather over gloo on CPUs, NCCL on GPUs), which is
also the barrier of the phase. When a rank failed, every rank leaves with an error at that boundary (no rank waits
for ever): the failing rank re-raises its own exception (so its traceback, or the CLI's one-line message for bad
input, is printed once), the others raise :class:`OtherRankFailed` and print nothing. With one process the same
code runs with one rank and no communication.
"""
from __future__ import annotations

import os
import warnings
from typing import Any

#: How long a process waits for the others at a phase boundary (used when this module starts the process group).
#: Failures do not wait for it: a process that raises tells the others at once, and a process that dies is stopped
#: with the others by the launcher; it only bounds a process that hangs, so a slow phase (a model download, a long
#: prompt) must fit in it.
COLLECTIVE_TIMEOUT_SECONDS = 3 * 3600
#: Exceptions that are the user's input, not a crash: the CLI shows one line and exits 2.
USAGE_ERRORS = (ValueError, FileNotFoundError)


class OtherRankFailed(RuntimeError):
    """Raised on every rank that did *not* show the error when some rank failed at a phase boundary.

    ``exit_code``: what the process should exit with (2 when every failure was bad input, else 1); ``failures``:
    ``{rank: "ExceptionType: message"}``; ``stage``: the phase that failed."""

    def __init__(self, stage: str, failures: dict[int, str], exit_code: int):
        shown = "; ".join(f"rank {rank}: {text}" for rank, text in sorted(failures.items()))
        super().__init__(f"{stage}: stopped because another process failed ({shown})")
        self.stage, self.failures, self.exit_code = stage, failures, exit_code


def _truthy(value: str | None) -> bool:
    return str(value).lower() in ("1", "true", "yes", "on")


def launched_ranks() -> int:
    """How many processes the launcher started (``WORLD_SIZE`` and MPI equivalents), 1 without a launcher; read
    from the environment, without starting ``torch.distributed``."""
    for name in ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE"):
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return 1


def is_main_rank() -> bool:
    """Whether this process is rank 0, from the launcher's environment (``RANK`` and MPI equivalents); ``True``
    without a launcher. For messages printed before the process group exists (bad command-line input)."""
    for name in ("RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK"):
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name]) == 0
    return True


def single_process_cpu_launch() -> bool:
    """``accelerate launch --cpu --num_processes N`` (N > 1) without ``--mpirun_hostfile`` starts *one* process
    (accelerate runs several CPU processes through mpirun only): it then sets ``ACCELERATE_USE_CPU`` and
    ``MASTER_PORT`` but no ``WORLD_SIZE``. True in that case, so the run can say so instead of being silently
    serial."""
    return (_truthy(os.environ.get("ACCELERATE_USE_CPU")) and "MASTER_PORT" in os.environ
            and launched_ranks() == 1)


def process_state(cpu: bool | None = None):
    """The current ``accelerate.PartialState`` (created on first use; it starts ``torch.distributed`` when the
    process was launched with several ranks).

    ``cpu``: communicate over gloo rather than NCCL; ``None``: when accelerate was told ``--cpu`` or no CUDA
    device is present. (accelerate needs this hint: under ``torchrun`` on a machine without GPUs a
    ``PartialState()`` made without ``cpu=True`` would silently see one process.)"""
    import datetime

    import torch
    from accelerate import PartialState

    if cpu is None:
        cpu = _truthy(os.environ.get("ACCELERATE_USE_CPU")) or not torch.cuda.is_available()
    return PartialState(cpu=cpu, timeout=datetime.timedelta(seconds=COLLECTIVE_TIMEOUT_SECONDS))


class Phase:
    """One phase of a run between two boundaries; see :meth:`Ranks.phase`. Set ``payload`` inside the block
    (something picklable: it goes to every rank); after the block ``records`` holds every rank's payload, by
    rank."""

    def __init__(self, ranks: "Ranks", stage: str):
        self.ranks, self.stage = ranks, stage
        self.payload: Any = None
        self.records: list = []

    def __enter__(self) -> "Phase":
        return self

    def __exit__(self, kind, error, traceback) -> bool:
        if error is not None and not isinstance(error, Exception):
            return False  # KeyboardInterrupt, SystemExit: the launcher stops the other ranks
        self.records = self.ranks.exchange(self.stage, error, self.payload)
        return False  # this rank's own error (if any) propagates with its traceback


class Ranks:
    """The processes of a run as seen from one of them: ``rank`` (0 .. ``size`` - 1), ``size``, ``is_main``,
    ``local_rank`` and the accelerate ``state``. ``Ranks()`` uses :func:`process_state`."""

    def __init__(self, state=None):
        self.state = process_state() if state is None else state
        self.rank = int(self.state.process_index)
        self.size = int(self.state.num_processes)
        self.local_rank = int(self.state.local_process_index)
        self.is_main = self.rank == 0
        if self.size == 1 and single_process_cpu_launch():
            warnings.warn("accelerate launch --cpu started a single process (several CPU processes need mpirun: "
                          "--mpirun_hostfile); this run uses 1 process. For N CPU processes use `accelerate launch "
                          "--multi_gpu --num_processes N ...` or `torchrun --nproc_per_node N -m captum_diffusion "
                          "...` (gloo on CPUs).", stacklevel=2)

    def __repr__(self) -> str:
        return f"Ranks(rank={self.rank}, size={self.size})"

    def device(self, device: str | None) -> str | None:
        """The torch device this rank uses for a run's ``device``: ``"cuda"`` becomes this rank's GPU
        (``cuda:<local rank>``) when there are several ranks; anything else is kept."""
        if device == "cuda" and self.size > 1:
            own = getattr(self.state, "device", None)
            return str(own) if getattr(own, "type", None) == "cuda" else f"cuda:{self.local_rank}"
        return device

    def phase(self, stage: str) -> Phase:
        """``with ranks.phase("fill") as phase: ...; phase.payload = ...`` runs the block, then meets every rank
        (:meth:`exchange`); ``phase.records`` is then every rank's payload. An exception in the block, or in
        another rank's block, stops every rank there (see the module docstring)."""
        return Phase(self, stage)

    def exchange(self, stage: str, error: BaseException | None, payload: Any = None) -> list:
        """Every rank's ``payload``, by rank (the barrier of a phase). When some rank failed, raises: this rank's
        ``error`` is left to propagate (returns normally) when this rank should show it (the lowest rank with that
        message), otherwise :class:`OtherRankFailed` is raised."""
        record = {"rank": self.rank, "payload": payload, "error": None if error is None else _describe(error),
                  "usage": isinstance(error, USAGE_ERRORS)}
        records = [record] if self.size == 1 else _all_gather(record)
        failed = [r for r in records if r["error"] is not None]
        if not failed:
            return [r["payload"] for r in sorted(records, key=lambda r: r["rank"])]
        shown_by = {}
        for r in sorted(failed, key=lambda r: r["rank"]):
            shown_by.setdefault(r["error"], r["rank"])
        if error is not None and shown_by.get(record["error"]) == self.rank:
            return []  # the caller re-raises its own error: shown once, by this rank
        code = 2 if all(r["usage"] for r in failed) else 1
        raise OtherRankFailed(stage, {r["rank"]: r["error"] for r in failed}, code)


def _describe(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _all_gather(record: dict) -> list:
    from accelerate.utils import gather_object

    return list(gather_object([record]))


def leave_process_group() -> None:
    """Destroy the ``torch.distributed`` process group, if one was started: a process that exits with gloo's
    threads still running aborts ("terminate called without an active exception", exit code -6)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
