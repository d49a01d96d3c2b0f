"""shap over prompt words: a masker over a 0/1 word row, and :func:`explain_prompt`.

The model shap sees is a :class:`captum_diffusion.words.WordGame` (``f_masked``: 0/1 masks ``(n, d)`` ->
scores ``(n,)``); a masked word is deleted from the prompt (never replaced by "..."), so the base value is
``f("")``. The masker hides a word by setting its column to 0 (background row of zeros), and reports the
words as ``feature_names`` and as the explanation's ``.data``, so stock shap plots label them::

    game = WordGame(f, "a red circle")
    explainer = shap.Explainer(game, WordMasker(game.words), algorithm="exact")
    explanation = explainer(np.ones((1, game.n_words)))[0]      # .values (d,), .base_values = f("")

Use :class:`WordPartitionMasker` (words grouped by adjacency) for ``algorithm="partition"``.
"""
from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import shap

from captum_diffusion import checks
from captum_diffusion.words import PromptFunction, WordGame, as_words, word_labels
from captum_diffusion.words.game import MAX_EXACT_WORDS  # largest prompt (in words) for exact Shapley values
#: ``algorithm="auto"`` in :func:`explain_prompt` is exact up to this many words (4096 sub-prompts), permutation
#: sampling above. The measured reason (``benchmarks/estimators.py``, table in the README): for >= 90% of the ranks
#: aligned with exact values on every 10- and 12-word game, no sampler needed less than 50% of the 2**d images exact
#: uses, and shap's permutation sampler (what auto runs) did not get there at 50% (56-93% ranks aligned; it repeats
#: coalitions, 0.4 new image per payoff call). Exact costs at most twice as many images and is exact; above 12 words
#: it is refused (:data:`MAX_EXACT_WORDS`), so auto samples there.
AUTO_EXACT_WORDS = MAX_EXACT_WORDS

ALGORITHMS = ("auto", "exact", "permutation", "partition")


def cache_shap_compilation(cache_dir=None) -> Path | None:
    """Keep shap's numba-compiled helpers on disk, so a new process loads them instead of compiling them again.

    shap compiles a few ``@njit`` functions (its masked model, tabular masker, exact explainer and links) on first
    use in every process, about 10 s of CPU per cold run, because they are declared without ``cache=True``. This
    turns numba's own on-disk cache on for every numba function of the imported shap modules, in a per-user folder.
    numba keys each entry by the source file's content hash and the machine, so a shap upgrade or another CPU
    compiles afresh. Left out: functions taking shap's ``link`` (a numba function passed as an argument: numba
    types it by its identity, so their entry would never match in a new process and each process would add one),
    and recursive functions (shap's ``lower_credit`` and ``_rec_fill_masks``; a recursive function read back from
    numba's cache crashed the partition explainer). It is called once, when this module is imported; anything that fails leaves shap as it
    is.

    Parameters
    ----------
    cache_dir : str or Path, optional
        The folder (default: ``$NUMBA_CACHE_DIR`` when set, else ``$XDG_CACHE_HOME/diffusion-explain/numba``,
        i.e. ``~/.cache/diffusion-explain/numba``).

    Returns
    -------
    Path or None
        The folder the compiled functions are kept in, or ``None`` when caching could not be turned on (numba
        missing or changed, an unwritable folder): shap then compiles in each process, as without this.
    """
    import inspect
    import os
    import sys

    try:
        from numba.core import config as numba_config
        from numba.core.dispatcher import Dispatcher

        folder = Path(cache_dir or os.environ.get("NUMBA_CACHE_DIR")
                      or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "diffusion-explain"
                      / "numba").expanduser()
        folder.mkdir(parents=True, exist_ok=True)
        dispatchers = {id(obj): obj for name, module in list(sys.modules.items())
                       if (name == "shap" or name.startswith("shap.")) and module is not None
                       for obj in list(vars(module).values()) if isinstance(obj, Dispatcher)}
        before, numba_config.CACHE_DIR = numba_config.CACHE_DIR, str(folder)
        try:  # numba's locator reads CACHE_DIR when the cache is made; other numba users keep their setting
            for dispatcher in dispatchers.values():
                function = dispatcher.py_func
                recursive = function.__name__ in function.__code__.co_names
                if not recursive and "link" not in inspect.signature(function).parameters:
                    dispatcher.enable_caching()
        finally:
            numba_config.CACHE_DIR = before
        return folder
    except Exception:  # noqa: BLE001 - a speed-up only: shap works the same without it
        return None


#: Where shap's compiled helpers are kept (:func:`cache_shap_compilation`); ``None`` when they are not.
SHAP_COMPILATION_CACHE = cache_shap_compilation()


def word_clustering(n_words: int) -> np.ndarray:
    """A balanced hierarchical clustering of ``n_words`` words in reading order, for Owen/partition values.

    Neighbouring words merge first (pairs, then pairs of pairs, ...). Returns a scipy linkage matrix
    ``(n_words - 1, 4)`` of ``[left id, right id, height, size]`` (float64).
    """
    n_words = checks.positive_int(n_words, "n_words")
    clusters = [(i, 1) for i in range(n_words)]  # (cluster id, number of words)
    rows, next_id, height = [], n_words, 1.0
    while len(clusters) > 1:
        merged = []
        for k in range(0, len(clusters) - 1, 2):
            (left, n_left), (right, n_right) = clusters[k], clusters[k + 1]
            rows.append([left, right, height, n_left + n_right])
            merged.append((next_id, n_left + n_right))
            next_id += 1
        if len(clusters) % 2:
            merged.append(clusters[-1])
        clusters, height = merged, height + 1.0
    return np.array(rows, dtype=np.float64).reshape(-1, 4)


class _WordRow:
    """Mixin: label the 0/1 word row with its words (``feature_names`` and the explanation's ``.data``)."""

    words: list[str]

    def _init_words(self, words: Sequence[str]) -> np.ndarray:
        self.words = as_words(words, "words")
        return np.zeros((1, len(self.words)))  # background: every word absent

    def feature_names(self, x):  # called by shap.Explainer once per explained row
        return [word_labels(self.words)]  # a repeated word is "a#0", "a#1", as everywhere in the project

    def data_transform(self, x):  # shap puts this in Explanation.data
        return [np.array(self.words, dtype=object)]


class WordMasker(_WordRow, shap.maskers.Independent):
    """Masker over the 0/1 presence row of ``words``: a hidden word becomes 0 (= deleted from the prompt).

    Explain the row ``np.ones((1, d))`` with a :class:`~captum_diffusion.words.WordGame` as the model.
    Works with ``algorithm="exact"``, ``"permutation"`` and ``"auto"`` (shap picks exact up to 10 words).
    """

    def __init__(self, words: str | Sequence[str]):
        super().__init__(self._init_words(words), max_samples=1)


class WordPartitionMasker(_WordRow, shap.maskers.Partition):
    """Like :class:`WordMasker`, with words grouped by :func:`word_clustering` (or ``clustering``, a linkage
    matrix ``(d - 1, 4)``), for ``algorithm="partition"`` (Owen values; they equal Shapley values when the
    game is additive). With ``algorithm="exact"`` shap computes exact Owen values over the same tree."""

    def __init__(self, words: str | Sequence[str], clustering: np.ndarray | None = None):
        background = self._init_words(words)
        d = len(self.words)
        clustering = word_clustering(d) if clustering is None else checks.numeric_array(clustering, "clustering")
        if clustering.shape != (d - 1, 4):
            raise ValueError(
                f"clustering must be a linkage matrix of shape ({d - 1}, 4) for {d} words, got {clustering.shape}"
            )
        for k, (left, right, height, size) in enumerate(clustering):
            ids_ok = all(v == int(v) and 0 <= v < d + k for v in (left, right)) and left != right
            if not ids_ok or height < 0 or size != int(size) or not 2 <= size <= d:
                raise ValueError(f"clustering row {k} {clustering[k].tolist()} is not a linkage row [left id, right id, "
                                 f"height >= 0, size]: ids must be earlier clusters (0..{d + k - 1}), size in 2..{d}")
        super().__init__(background, max_samples=1, clustering=clustering)


def resolve_algorithm(algorithm: str, n_words: int) -> str:
    """The shap algorithm :func:`explain_prompt` runs for a prompt of ``n_words`` words.

    ``"auto"``: exact up to :data:`AUTO_EXACT_WORDS` words, else permutation sampling. ``"exact"`` on more than
    :data:`MAX_EXACT_WORDS` words raises ``ValueError``.
    """
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
    if algorithm == "auto":
        return "exact" if n_words <= AUTO_EXACT_WORDS else "permutation"
    if algorithm == "exact" and n_words > MAX_EXACT_WORDS:
        raise ValueError(
            f"exact Shapley values over {n_words} words need 2**{n_words} = {2 ** n_words} sub-prompts; exact is "
            f"limited to {MAX_EXACT_WORDS} words. Use algorithm='permutation' (or 'partition') with "
            f"max_evals=... (e.g. max_evals={20 * n_words + 1}, about 10 permutations)"
        )
    return algorithm


def cap_max_evals(max_evals: int, algorithm: str, n_words: int) -> int:
    """``max_evals`` capped, with a warning, at what permutation sampling over ``n_words`` words can use.

    Parameters
    ----------
    max_evals : int
        The budget asked for (checked by :func:`check_max_evals`).
    algorithm : str
        shap's algorithm; only ``"permutation"`` is capped.
    n_words : int
        ``d``.

    Returns
    -------
    int
        At most ``(2 d + 1) * max(1, d! / 2)``: one forward-and-back pass per distinct pair of permutations (a
        budget past it only draws the same permutations again; shap would run, and hold a batch of, all of it).
    """
    if algorithm != "permutation" or n_words > 12:  # 13!/2 passes exceed any budget anyone gives
        return max_evals
    most = (2 * n_words + 1) * max(1, math.factorial(n_words) // 2)
    if max_evals > most:
        warnings.warn(f"max_evals={max_evals} is more than permutation sampling over {n_words} words can use: "
                      f"{math.factorial(n_words)} permutations make {max(1, math.factorial(n_words) // 2)} "
                      f"forward-and-back passes of {2 * n_words + 1} evaluations; capped at {most} (for exact values "
                      "use algorithm='exact')", UserWarning, stacklevel=3)
        return most
    return max_evals


def check_max_evals(max_evals: int, algorithm: str, n_features: int, features: str) -> int:
    """``max_evals`` if shap's ``algorithm`` can work with it over ``n_features`` features, else ``ValueError``.

    "exact" needs ``2**d`` (every coalition). "permutation" needs ``2 * d + 1`` (one permutation forward and back):
    with fewer, shap returns one value spread evenly over the features (or fails, depending on its version).
    "partition" is held to the same ``2 * d + 1``, below which it too spreads one value evenly; above it, words of a
    cluster the budget did not split still share the cluster's value (shap's approximation: raise ``max_evals``)."""
    least = 2**n_features if algorithm == "exact" else 2 * n_features + 1
    if max_evals < least:
        rule = "2**d (every coalition)" if algorithm == "exact" else "2*d + 1"
        raise ValueError(f"max_evals={max_evals} is too small for algorithm={algorithm!r} over {n_features} {features}: "
                         f"the minimum is {rule} = {least}; with fewer, shap spreads one value evenly over the "
                         f"{features} (or fails)")
    return max_evals


def explain_prompt(
    prompt: str,
    f: PromptFunction,
    algorithm: Literal["auto", "exact", "permutation", "partition"] = "auto",
    max_evals: int | None = None,
    *,
    batch_size: int | None = None,
    seed: int | None = 0,
    progress: bool = True,
) -> shap.Explanation:
    """Shapley values of the words of ``prompt`` for the black box ``f`` (sub-prompts -> scores ``(n,)``).

    Parameters
    ----------
    prompt : str
        The prompt; its ``d`` whitespace words are the players.
    f : PromptFunction
        The black box: a list of ``n`` sub-prompts -> scores ``(n,)``, e.g. a ``PromptScore``.
    algorithm : {"auto", "exact", "permutation", "partition"}
        "exact" (every subset, the empty one included; at most :data:`MAX_EXACT_WORDS` words),
        "permutation" (sampled permutations) / "partition" (Owen values over :func:`word_clustering`), both with
        a budget of ``max_evals`` evaluations, or "auto" (exact up to :data:`AUTO_EXACT_WORDS` words,
        permutation above).
    max_evals : int, optional
        The budget of evaluations (shap's default when None; at least ``2 * d + 1``, and ``2**d`` for "exact":
        ``ValueError`` below, see :func:`check_max_evals`).
    batch_size : int, optional
        Sub-prompts per call to ``f`` (default: all of them, so ``f`` can batch its own work).
    seed : int, optional
        shap's seed for the permutation sampler (shap seeds numpy's global RNG with it; None leaves it alone).
    progress : bool
        shap's progress bar (shap shows it only for slow runs).

    Returns
    -------
    shap.Explanation
        A single row: ``.values`` float ``(d,)`` in the units of ``f``, ``.base_values`` = ``f("")``, ``.data`` =
        the ``d`` words, ``.feature_names`` = their labels (``word_labels``: a repeated word is ``a#0``,
        ``a#1``). With "exact", ``.values.sum() == f(prompt) - f("")``.
    """
    game = WordGame(f, prompt)
    d = game.n_words
    algorithm = resolve_algorithm(algorithm, d)
    max_evals = checks.optional_positive_int(max_evals, "max_evals")
    batch_size = checks.optional_positive_int(batch_size, "batch_size")
    seed = None if seed is None else checks.random_state(seed, "seed")
    if max_evals is not None:
        max_evals = cap_max_evals(check_max_evals(max_evals, algorithm, d, "words"), algorithm, d)
    masker = WordPartitionMasker(game.words) if algorithm == "partition" else WordMasker(game.words)
    seed_kwarg = {"seed": seed} if algorithm == "permutation" else {}
    explainer = shap.Explainer(game, masker, algorithm=algorithm, **seed_kwarg)
    if algorithm == "exact" and max_evals is None:
        max_evals = 2**d
    call_kwargs = {"silent": not progress, "batch_size": batch_size or max(max_evals or 0, 512)}
    if max_evals is not None:
        call_kwargs["max_evals"] = max_evals
    return explainer(np.ones((1, d)), **call_kwargs)[0]


def word_explanation(values, prompt: str | Sequence[str], base_value: float = 0.0) -> shap.Explanation:
    """Wrap per-word attributions from elsewhere (a captum tensor, LIME weights, an array) as a single-row
    ``shap.Explanation`` (``.values`` ``(d,)``, ``.data`` = the words, ``.feature_names`` = their labels) so stock shap plots
    draw them. ``base_value``: the value with every word deleted, ``f("")``, for waterfall plots."""
    words = as_words(prompt)
    values = checks.numeric_array(values, "values").reshape(-1)
    base_value = checks.finite_number(base_value, "base_value")
    if values.shape != (len(words),):
        raise ValueError(f"values has {values.size} entries but the prompt has {len(words)} words {words}")
    return shap.Explanation(
        values=values, base_values=float(base_value), data=np.array(words, dtype=object), feature_names=word_labels(words)
    )
