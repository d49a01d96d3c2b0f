"""Shapley axiom checks for any per-word attribution (shap, lime, captum's ``WordAttributionResult`` / a result with
``seq_attr``, or a plain array).

Each check measures a gap in the units of ``f`` and passes when ``gap <= atol``:

- efficiency: ``|sum(phi) - (v(all words) - v(no words))|``;
- symmetry: ``max |phi_i - phi_j|`` over word pairs the game treats alike (``v(S + i) == v(S + j)`` for every
  ``S`` holding neither);
- null player: ``max |phi_i|`` over words that never change the value (``v(S + i) == v(S)`` for every ``S``).

The game is ``v(S) = f(sub-prompt of S)`` through :class:`~captum_diffusion.words.WordGame`; pass ``f`` and
``prompt``, or a ``WordGame`` as ``f`` to reuse its memo. Symmetry and null player enumerate all ``2**d``
coalitions (one batched call to ``f``).
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import Sequence

import numpy as np

from captum_diffusion import checks
from captum_diffusion.metrics.ranking import as_vector
from captum_diffusion.words import PromptFunction, WordGame, as_game, word_labels


@dataclass(frozen=True)
class AxiomCheck:
    """Outcome of one axiom check: ``gap`` (units of ``f``), tolerance ``atol``, ``passed = gap <= atol``,
    ``players`` (the word indices or index pairs the axiom applies to) and a readable ``detail``."""

    axiom: str
    gap: float
    atol: float
    passed: bool
    players: tuple
    detail: str

    def __bool__(self) -> bool:
        return self.passed


def _values(attributions, game: WordGame) -> np.ndarray:
    phi = as_vector(attributions, "attributions")
    if phi.size != game.n_words:
        raise ValueError(f"attributions has {phi.size} values but the prompt has {game.n_words} words")
    labels = getattr(attributions, "input_tokens", None)
    if labels is not None and list(labels) != word_labels(game.words):
        raise ValueError(f"attributions are for the words {list(labels)} but the prompt's words are "
                         f"{word_labels(game.words)}")
    return phi


def _check(axiom: str, gap: float, atol: float, players: tuple, detail: str) -> AxiomCheck:
    return AxiomCheck(axiom, float(gap), float(atol), bool(gap <= atol), players, detail)


def check_efficiency(
    attributions,
    f: PromptFunction | WordGame | None = None,
    prompt: str | None = None,
    *,
    full_value: float | None = None,
    base_value: float | None = None,
    atol: float = 1e-6,
) -> AxiomCheck:
    """Efficiency: attributions ``(d,)`` sum to ``v(all words) - v(no words)``.

    Give ``f`` and ``prompt`` (then ``v(all) = f(prompt)``, ``v(none) = f("")``), or ``full_value`` and
    ``base_value`` directly (``base_value`` defaults to a shap Explanation's ``.base_values``; both default to a
    ``WordAttributionResult``'s ``full_value`` / ``base_value``).
    """
    atol = checks.finite_number(atol, "atol", low=0.0)
    full_value = checks.optional_finite_number(full_value, "full_value")
    base_value = checks.optional_finite_number(base_value, "base_value")
    if f is None and hasattr(attributions, "seq_attr") and hasattr(attributions, "base_value"):
        full_value = attributions.full_value if full_value is None else full_value
        base_value = attributions.base_value if base_value is None else base_value
    if base_value is None and hasattr(attributions, "base_values") and f is None:
        base_value = float(np.ravel(attributions.base_values)[0])
    if f is not None:
        game = as_game(f, prompt)
        phi = _values(attributions, game)
        base_value, full_value = game([np.zeros(game.n_words), np.ones(game.n_words)])
    elif full_value is None or base_value is None:
        raise ValueError("give f and prompt, or both full_value and base_value")
    else:
        phi = as_vector(attributions, "attributions")
    terms = np.concatenate([phi, [-full_value, base_value]])
    scale = max(float(np.abs(terms).max()), np.finfo(np.float64).tiny)  # scaled: huge values must not give inf - inf
    gap = abs((terms / scale).sum()) * scale
    with np.errstate(over="ignore"):  # the detail may read inf where the sums exceed float64; the gap is scaled
        detail = f"sum(phi) = {phi.sum():.6g}, v(all) - v(none) = {full_value - base_value:.6g}"
    return _check("efficiency", gap, atol, tuple(range(phi.size)), detail)


def _table(game: WordGame) -> tuple[np.ndarray, dict[bytes, float]]:
    masks, values = game.all_coalitions()
    return masks, {m.tobytes(): v for m, v in zip(masks, values)}


def _with(mask: np.ndarray, *players: int) -> bytes:
    out = mask.copy()
    out[list(players)] = True
    return out.tobytes()


def check_symmetry(
    attributions,
    f: PromptFunction | WordGame,
    prompt: str | None = None,
    *,
    pairs: Sequence[tuple[int, int]] | None = None,
    atol: float = 1e-6,
    game_atol: float = 1e-9,
) -> AxiomCheck:
    """Symmetry: words ``i`` and ``j`` that the game treats alike (values within ``game_atol``) get the same
    attribution. ``pairs``: the pairs to check (each must be symmetric in the game, else ``ValueError``);
    default: every symmetric pair found. No symmetric pair -> passes with ``gap = 0``."""
    atol = checks.finite_number(atol, "atol", low=0.0)
    game_atol = checks.finite_number(game_atol, "game_atol", low=0.0)
    game = as_game(f, prompt)
    d = game.n_words
    phi = _values(attributions, game)
    masks, v = _table(game)

    def symmetric(i: int, j: int) -> bool:
        return all(
            abs(v[_with(m, i)] - v[_with(m, j)]) <= game_atol for m in masks if not (m[i] or m[j])
        )

    if pairs is None:
        checked = tuple(p for p in combinations(range(d), 2) if symmetric(*p))
    else:
        checked = []
        for pair in checks.sequence(pairs, "pairs"):
            if isinstance(pair, (str, bytes)) or np.ndim(pair) != 1 or len(pair) != 2:
                raise ValueError(f"pairs must hold pairs (i, j) of word indices, got {pair!r}")
            i, j = (checks.int_at_least(k, 0, "pairs (word indices)") for k in pair)
            if not (i < d and j < d) or i == j:
                raise ValueError(f"pairs must hold two different word indices in 0..{d - 1}, got {(i, j)}")
            checked.append((i, j))
        checked = tuple(checked)
        for i, j in checked:
            if not symmetric(i, j):
                raise ValueError(
                    f"words {game.words[i]!r} ({i}) and {game.words[j]!r} ({j}) are not symmetric in this game"
                )
    gap = max((abs(phi[i] - phi[j]) for i, j in checked), default=0.0)
    names = ", ".join(f"{game.words[i]}~{game.words[j]}" for i, j in checked) or "none"
    return _check("symmetry", gap, atol, checked, f"symmetric pairs: {names}")


def check_null_player(
    attributions,
    f: PromptFunction | WordGame,
    prompt: str | None = None,
    *,
    atol: float = 1e-6,
    game_atol: float = 1e-9,
) -> AxiomCheck:
    """Null player: a word whose addition never changes the value (within ``game_atol``) gets attribution 0.
    No null word -> passes with ``gap = 0``."""
    atol = checks.finite_number(atol, "atol", low=0.0)
    game_atol = checks.finite_number(game_atol, "game_atol", low=0.0)
    game = as_game(f, prompt)
    phi = _values(attributions, game)
    masks, v = _table(game)
    nulls = tuple(
        i for i in range(game.n_words)
        if all(abs(v[_with(m, i)] - v[m.tobytes()]) <= game_atol for m in masks if not m[i])
    )
    gap = max((abs(phi[i]) for i in nulls), default=0.0)
    names = ", ".join(game.words[i] for i in nulls) or "none"
    return _check("null_player", gap, atol, nulls, f"null words: {names}")
