"""What a word-attribution runner plays and returns, apart from the runs that call it.

A runner (see ``runs.methods``) is called as ``run(f, config, seed, payoff_at)``: ``f`` is a payoff over
sub-prompts (a ``PromptScore``, or while planning a :class:`RecordingPayoff` that makes no image and records what
would be generated), ``payoff_at`` a :class:`PayoffAt` giving the same game at other generation settings, and it
returns ``(values, f(""))`` or a :class:`SeedEstimate`. This module imports nothing of ``runs``, so the registry, the
planner and the runners all build on it without importing each other.
"""
from __future__ import annotations

import hashlib
import inspect
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from captum_diffusion.words import split_words

if TYPE_CHECKING:  # pragma: no cover - annotations only
    from captum_diffusion.generation.settings import GenerationSettings

__all__ = ["PayoffAt", "RecordingPayoff", "SeedEstimate", "placeholder_value"]


def placeholder_value(prompt: str, salt: int = 0) -> float:
    """A payoff in [0, 1) for recording: a hash of ``prompt`` (and ``salt``), so distinct sub-prompts get
    distinct, finite values and no explainer sees a degenerate (constant) game."""
    digest = hashlib.sha256(f"{salt}:{prompt}".encode()).digest()
    return int.from_bytes(digest[:6], "big") / 2.0**48


def _default_chunk_size() -> int:
    from captum_diffusion.scoring import PromptScore

    return int(inspect.signature(PromptScore).parameters["chunk_size"].default)


class RecordingPayoff:
    """A stand-in for :class:`~captum_diffusion.scoring.PromptScore` that makes no image.

    It returns :func:`placeholder_value` payoffs and records, in ``items``, the sub-prompts a ``PromptScore``
    would have had generated, in the order it would have generated them (each new chunk of sub-prompts, then the
    full prompt's reference image).

    Parameters
    ----------
    prompt : str
        The prompt of the game (``self.prompt``: its words joined by single spaces).
    salt : int
        Changes every placeholder payoff (to check that a method's sub-prompts do not depend on them).
    chunk_size : int, optional
        Sub-prompts per chunk, as ``PromptScore``'s (default: its default).
    """

    def __init__(self, prompt: str, *, salt: int = 0, chunk_size: int | None = None):
        self.prompt = " ".join(split_words(prompt))
        self.salt = salt
        self.chunk_size = chunk_size or _default_chunk_size()
        self.items: dict[str, None] = {}
        self._scored: set[str] = set()

    def __call__(self, prompts: Sequence[str]) -> np.ndarray:
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        new = [p for p in dict.fromkeys(prompts) if p not in self._scored]
        for start in range(0, len(new), self.chunk_size):
            chunk = new[start:start + self.chunk_size]
            self.items.update(dict.fromkeys(chunk))
            self.items.setdefault(self.prompt)  # PromptScore's reference image
            self._scored.update(chunk)
        return np.array([placeholder_value(p, self.salt) for p in prompts], dtype=np.float64)



@dataclass(frozen=True)
class SeedEstimate:
    """What a runner found on one seed's game, when it says more than ``(values, f(""))``.

    Parameters
    ----------
    values : numpy.ndarray
        float64 ``(d,)``, one value per word, in the units of the payoff.
    base : float
        ``f("")``.
    standard_errors : numpy.ndarray, optional
        float64 ``(d,)``, the estimate's own standard errors for this seed's game (0 where exact); ``None``: not
        stated (the run derives them between seeds).
    degrees_of_freedom : float or numpy.ndarray
        Of ``standard_errors``, scalar or ``(d,)``; ``inf``: normal intervals.
    exact : bool
        No sampling error for this seed.
    cost : dict, optional
        Images it used for this seed: ``full_images``, ``proxy_images``, ``exact_images`` and how they were
        chosen (see ``runs.multifidelity.run``); ``None``: not counted per method.
    """

    values: np.ndarray
    base: float
    standard_errors: np.ndarray | None = None
    degrees_of_freedom: object = np.inf
    exact: bool = False
    cost: dict | None = field(default=None, compare=False)


class PayoffAt:
    """A runner's ``payoff_at``: ``payoff_at(settings)`` is the payoff of the same prompt and seed at ``settings``
    over the run's, and ``run_settings`` the run's own generation settings.

    Parameters
    ----------
    at : callable
        ``at(settings: GenerationSettings) -> payoff`` (sub-prompts -> float64 ``(n,)``).
    run_settings : GenerationSettings or None
        The run's settings, the model's defaults filled in where known (planning without a model leaves them
        ``None``).
    """

    def __init__(self, at: Callable[["GenerationSettings"], object], run_settings: "GenerationSettings | None"):
        self.at, self.run_settings = at, run_settings

    def __call__(self, settings: "GenerationSettings"):
        return self.at(settings)
