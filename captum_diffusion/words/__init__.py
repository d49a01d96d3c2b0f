"""Prompt words as players: the word game (``game``), word-to-token matching for attention maps (``tokens``) and
captum's perturbation attributions over words (``attribution``)."""
from __future__ import annotations

from captum_diffusion.lazy import lazy_getattr
from captum_diffusion.protocols import PromptFunction
from captum_diffusion.words.game import (WordGame, as_game, as_mask_matrix, as_words, evaluate_masks, evaluate_prompts,
                                         split_words, subprompt, word_key, word_labels)

_EXPORTS = {
    "WordAttribution": "attribution",
    "WordAttributionResult": "attribution",
    "shapley_from_values": "attribution",
    "resolve_words": "tokens",
    "word_token_positions": "tokens",
    "WordTokens": "tokens",
    "explain_interactions": "interactions",
    "strongest_pairs": "interactions",
    "pair_interactions": "interactions",
    "multifidelity_shapley": "multifidelity",
    "ShapleyEstimate": "multifidelity",
    "ShapleyCost": "multifidelity",
    "stack_seeds": "multifidelity",
    "certainty_statement": "certainty",
}

__all__ = sorted([*_EXPORTS, "PromptFunction", "WordGame", "as_game", "as_mask_matrix", "as_words", "evaluate_masks",
                  "evaluate_prompts", "split_words", "subprompt", "word_key", "word_labels"])

__getattr__ = lazy_getattr(__name__, _EXPORTS)
