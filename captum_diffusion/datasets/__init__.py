"""Datasets shipped with the package: Gupta & Kanoria's 10 prompts with per-word importances."""
from captum_diffusion.datasets.gupta_kanoria import GuptaKanoriaDataset, PromptRecord, load_gupta_kanoria

__all__ = ["GuptaKanoriaDataset", "PromptRecord", "load_gupta_kanoria"]
