"""Prompt words as players: the Gupta & Kanoria definition (whitespace split; "cat's" is one word)."""
from __future__ import annotations

from typing import Sequence


def split_words(prompt: str) -> list[str]:
    """Split ``prompt`` on whitespace into the words that act as players.

    Raises ``ValueError`` for an empty or whitespace-only prompt and ``TypeError`` for a non-string.
    """
    if not isinstance(prompt, str):
        raise TypeError(f"prompt must be a str, got {type(prompt).__name__}")
    words = prompt.split()
    if not words:
        raise ValueError("prompt is empty or whitespace-only; give at least one word, e.g. 'a red circle'")
    return words


def subprompt(words: Sequence[str], mask: Sequence) -> str:
    """The sub-prompt of ``words`` kept by ``mask`` (truthy = present), in order, joined by single spaces.

    The all-false mask gives the empty prompt ``""`` (the empty coalition: an unconditional generation).
    """
    if len(mask) != len(words):
        raise ValueError(f"mask has {len(mask)} entries but the prompt has {len(words)} words {list(words)}")
    return " ".join(word for word, keep in zip(words, mask) if keep)
