"""Captum's perturbation attributions over the words of a prompt.

captum explains ``forward(mask)`` where ``mask`` is a float 0/1 word-presence tensor ``(n, d)``: the input is
``ones(1, d)`` (every word present) and the baseline ``zeros(1, d)`` (every word deleted, the empty prompt).
``forward`` is the core's :class:`~captum_diffusion.words.WordGame`, so each sub-prompt reaches ``f`` once.
"""
from __future__ import annotations

from math import factorial
from typing import Any

import captum.attr
import numpy as np
import torch

from captum_diffusion.protocols import PromptFunction
from captum_diffusion.words.game import WordGame

#: captum's ShapleyValues enumerates d! orderings (8 words: 40320, ~30 s of bookkeeping): refused above this.
MAX_SHAPLEY_VALUES_WORDS = 8

#: method name -> captum class. All are perturbation methods: no gradient of ``f`` is needed.
METHODS = {
    "feature_ablation": captum.attr.FeatureAblation,
    "shapley_sampling": captum.attr.ShapleyValueSampling,
    "shapley_values": captum.attr.ShapleyValues,
    "kernel_shap": captum.attr.KernelShap,
    "lime": captum.attr.Lime,
}


class WordAttribution:
    """Per-word attributions of a black box ``f: Sequence[str] -> np.ndarray (n,)`` with a captum method.

    ``method``: one of :data:`METHODS` ("feature_ablation": ``f(prompt) - f(prompt without word)``;
    "shapley_values": exact Shapley values by all ``d!`` orderings, at most :data:`MAX_SHAPLEY_VALUES_WORDS`
    words; "shapley_sampling", "kernel_shap", "lime": sampled). ``init_kwargs`` go to the captum class (e.g. ``interpretable_model``
    for Lime). ``dtype``: dtype of the mask tensors and of the result (captum 0.9 still sums Shapley
    contributions in float32, so expect ~1e-6 agreement). ``progress``: captum's tqdm bar (``show_progress``).
    """

    def __init__(
        self,
        f: PromptFunction,
        method: str = "shapley_sampling",
        *,
        dtype: torch.dtype = torch.float64,
        progress: bool = True,
        **init_kwargs: Any,
    ):
        if not callable(f):
            raise TypeError(f"f must be callable: Sequence[str] -> np.ndarray (n,), got {type(f).__name__}")
        if method not in METHODS:
            raise ValueError(f"method must be one of {sorted(METHODS)}, got {method!r}")
        if not dtype.is_floating_point:
            raise TypeError(f"dtype must be a floating point torch dtype, got {dtype}")
        self.f = f
        self.method = method
        self.dtype = dtype
        self.progress = bool(progress)
        self.init_kwargs = init_kwargs
        self.last_game: WordGame | None = None  # the game of the latest attribute() call (counts calls to f)

    def attribute(self, prompt: str, **captum_kwargs: Any) -> torch.Tensor:
        """Attributions of the words of ``prompt``: tensor ``(d,)`` of ``dtype``, in the units of ``f``.

        ``captum_kwargs`` go to the captum method's ``attribute`` (``n_samples``, ``perturbations_per_eval``,
        ``show_progress``, ...); ``inputs`` and ``baselines`` are set here. ``perturbations_per_eval``
        defaults to 16 (captum's is 1) so that ``f`` gets sub-prompts in batches; ``show_progress`` defaults
        to the ``progress`` given at construction.
        """
        fixed = {"inputs", "baselines", "target", "additional_forward_args"} & set(captum_kwargs)
        if fixed:
            raise TypeError(f"WordAttribution.attribute sets {sorted(fixed)} itself; do not pass them")
        captum_kwargs.setdefault("perturbations_per_eval", 16)
        captum_kwargs.setdefault("show_progress", self.progress)
        game = WordGame(self.f, prompt)
        if self.method == "shapley_values" and game.n_words > MAX_SHAPLEY_VALUES_WORDS:
            raise ValueError(
                f"captum's ShapleyValues walks all {game.n_words}! orderings; use at most {MAX_SHAPLEY_VALUES_WORDS} "
                "words, or method='shapley_sampling' with n_samples=..., or shap_adapters.explain_prompt("
                "algorithm='exact') for exact values over 2**d sub-prompts (up to 12 words)"
            )
        self.last_game = game

        def forward(masks: torch.Tensor) -> torch.Tensor:
            return torch.as_tensor(game(masks), dtype=self.dtype)

        algorithm = METHODS[self.method](forward, **self.init_kwargs)
        inputs = torch.ones(1, game.n_words, dtype=self.dtype)
        attributions = algorithm.attribute(inputs, baselines=torch.zeros_like(inputs), **captum_kwargs)
        return attributions.detach().reshape(game.n_words).to(self.dtype)

    def __repr__(self) -> str:
        return f"WordAttribution(method={self.method!r})"


def shapley_from_values(masks: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Exact Shapley values ``(d,)`` from a full table of coalition values (e.g. ``WordGame.all_coalitions()``).

    ``masks``: bool ``(2**d, d)``, every coalition once; ``values``: ``(2**d,)``. Uses the Shapley formula
    ``phi_i = sum_S |S|! (d-1-|S|)! / d! [v(S + i) - v(S)]`` over all ``S`` without ``i``, the empty one included.
    """
    masks = np.asarray(masks, dtype=bool)
    n, d = masks.shape
    if n != 2**d or len(np.unique(masks, axis=0)) != n:
        raise ValueError(f"masks must list each of the 2**{d} = {2 ** d} coalitions once, got {n} rows")
    index = {row.tobytes(): k for k, row in enumerate(masks)}
    sizes = masks.sum(1)
    weight = np.array([factorial(s) * factorial(d - 1 - s) / factorial(d) if s < d else 0.0 for s in range(d + 1)])
    phi = np.zeros(d)
    for k, row in enumerate(masks):
        for i in np.flatnonzero(~row):
            with_i = row.copy()
            with_i[i] = True
            phi[i] += weight[sizes[k]] * (values[index[with_i.tobytes()]] - values[k])
    return phi
