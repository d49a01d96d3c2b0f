"""shap adapters: explain prompt words (``text``) with stock shap explainers, maskers and plots."""
from shap_adapters.text import (
    AUTO_EXACT_WORDS,
    MAX_EXACT_WORDS,
    WordMasker,
    WordPartitionMasker,
    explain_prompt,
    word_clustering,
)

__all__ = [
    "AUTO_EXACT_WORDS",
    "MAX_EXACT_WORDS",
    "WordMasker",
    "WordPartitionMasker",
    "explain_prompt",
    "word_clustering",
]
