"""Loader for ``gupta_kanoria_prompts.json``: ten prompts, hand-assigned word importances (each prompt's
sum to 1) and the Shapley ranks / RMSE the paper reports (section 5.1)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources

import numpy as np

from captum_diffusion.words import split_words

FILENAME = "gupta_kanoria_prompts.json"


@dataclass(frozen=True)
class PromptRecord:
    """One prompt: ``words`` (its ``split_words``), ``ground_truth`` float64 ``(d,)`` summing to 1,
    ``reported_shapley_ranks`` int ``(d,)`` (1 = most important, as printed in the paper) and
    ``reported_rmse`` (the paper's printed per-prompt value)."""

    prompt: str
    words: tuple[str, ...]
    ground_truth: np.ndarray
    reported_shapley_ranks: np.ndarray
    reported_rmse: float


@dataclass(frozen=True)
class GuptaKanoriaDataset:
    """The records plus the paper's averages (``reported_percent_ranks_aligned`` as a fraction, 0.64;
    ``reported_mean_rmse``, 0.2161) and ``reported_examples`` (prompt -> {"shapley": scores}) from its
    worked examples. Iterable and indexable like a tuple of :class:`PromptRecord`."""

    name: str
    description: str
    records: tuple[PromptRecord, ...]
    reported_percent_ranks_aligned: float
    reported_mean_rmse: float
    reported_examples: dict

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self):
        return iter(self.records)

    def __getitem__(self, index: int) -> PromptRecord:
        return self.records[index]

    @property
    def prompts(self) -> list[str]:
        return [r.prompt for r in self.records]


def _record(raw: dict) -> PromptRecord:
    words = tuple(split_words(raw["prompt"]))
    record = PromptRecord(
        prompt=raw["prompt"],
        words=words,
        ground_truth=np.asarray(raw["ground_truth"], dtype=np.float64),
        reported_shapley_ranks=np.asarray(raw["reported_shapley_ranks"], dtype=int),
        reported_rmse=float(raw["reported_rmse"]),
    )
    if tuple(raw["words"]) != words or record.ground_truth.shape != (len(words),):
        raise ValueError(f"dataset record {raw['prompt']!r} does not match its words {raw['words']}")
    if not np.isclose(record.ground_truth.sum(), 1.0, atol=1e-6):
        raise ValueError(f"ground truth of {raw['prompt']!r} sums to {record.ground_truth.sum()}, not 1")
    return record


def load_gupta_kanoria() -> GuptaKanoriaDataset:
    """Load the shipped Gupta & Kanoria dataset (10 prompts of 3 or 4 words)."""
    raw = json.loads(resources.files("captum_diffusion.datasets").joinpath(FILENAME).read_text(encoding="utf-8"))
    return GuptaKanoriaDataset(
        name=raw["name"],
        description=raw["description"],
        records=tuple(_record(p) for p in raw["prompts"]),
        reported_percent_ranks_aligned=float(raw["reported"]["percent_ranks_aligned"]),
        reported_mean_rmse=float(raw["reported"]["mean_rmse"]),
        reported_examples=raw.get("reported_examples", {}),
    )
