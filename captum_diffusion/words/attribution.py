"""Captum's perturbation attributions over the words of a prompt.

captum explains ``forward(mask)`` where ``mask`` is a float 0/1 word-presence tensor ``(n, d)``: the input is
``ones(1, d)`` (every word present) and the baseline ``zeros(1, d)`` (every word deleted, the empty prompt).
``forward`` is the core's :class:`~captum_diffusion.words.WordGame`, so each sub-prompt reaches ``f`` once.

:class:`WordAttribution` follows the package's captum convention (as ``DAAM`` and ``CLIPSaliency`` do): it is a
``captum.attr.Attribution`` that wraps a captum attribution *instance* over the black box, as
``captum.attr.LLMAttribution`` wraps ``FeatureAblation(model)``; ``attribute()`` returns a tensor ``(d,)``
(captum's contract) and ``explain()`` the rich :class:`WordAttributionResult`, which *is* a
``captum.attr.LLMAttributionResult`` (``seq_attr``, ``input_tokens``, ``output_tokens``, ``seq_attr_dict``,
``plot_seq_attr()``), plus the game's ``base_value`` and ``full_value``.
"""
from __future__ import annotations

import contextlib
import copy
import inspect
import random
import warnings
from math import factorial
from typing import Any, Iterator, Optional, Sequence

import captum.attr
import numpy as np
import torch
from captum.attr import Attribution, LLMAttributionResult

from captum_diffusion import checks
from captum_diffusion.words.game import WordGame, word_labels

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

#: the methods that draw random samples (captum uses torch's global RNG): seeded by ``WordAttribution(seed=...)``,
#: with the fewest ``n_samples`` each accepts (a regression needs two samples: with one it returns zeros).
SAMPLED_METHODS = {"shapley_sampling": 1, "kernel_shap": 2, "lime": 2}

#: the sampled methods that fit a regression to their samples: they need ``n_samples >= d + 1`` for ``d`` words.
REGRESSION_METHODS = ("kernel_shap", "lime")

#: keyword arguments of captum's ``attribute`` that :meth:`WordAttribution.attribute` sets itself.
_FIXED = ("inputs", "baselines", "target", "additional_forward_args", "return_input_shape")

#: the name of the payoff in ``output_tokens``: ``f`` gives one score per prompt.
OUTPUT_NAME = "score"


class WordAttributionResult(LLMAttributionResult):
    """Per-word attributions of one prompt, as captum's ``LLMAttributionResult`` (it is one); what
    :meth:`WordAttribution.explain` returns.

    Parameters
    ----------
    seq_attr : torch.Tensor
        ``(d,)``, one attribution per word in the units of ``f``.
    words : sequence of str
        The prompt's ``d`` words.
    method : str
        The captum method's name in :data:`METHODS`.
    game : WordGame, optional
        The game that was played, for ``base_value`` / ``full_value`` on demand.
    base_value, full_value : float, optional
        ``f("")`` and ``f(prompt)`` when known (else read from ``game``).

    Attributes
    ----------
    seq_attr : torch.Tensor
        ``(d,)``, as given.
    input_tokens : list of str
        The words' labels (:func:`~captum_diffusion.words.word_labels`: a repeated word is ``a#0``, ``a#1``, as in
        DAAM's maps and shap's feature names).
    output_tokens : list of str
        ``["score"]``, the payoff.
    token_attr : torch.Tensor
        ``seq_attr`` as one row ``(1, d)``, so ``plot_token_attr()`` works too.
    words, prompt, method
        The prompt's words, them joined by single spaces, the method's name.
    base_value, full_value : float
        ``f("")`` (every word deleted) and ``f(prompt)``, from the game's memo: the sampled Shapley methods and
        Kernel SHAP evaluated both already; otherwise the first access sends that one prompt to ``f``. Efficiency
        (Shapley methods): ``seq_attr.sum() == full_value - base_value``.

    Notes
    -----
    ``plot_seq_attr(show=False)`` returns captum's ``(figure, axes)`` bar chart; ``seq_attr_dict`` maps labels to
    values; ``np.asarray(result)`` is ``seq_attr`` as numpy (so metrics taking arrays accept the result), and
    ``shap_adapters.word_explanation(result, result.words, result.base_value)`` is the same values as a
    ``shap.Explanation`` for shap's plots.
    """

    def __init__(self, *, seq_attr: torch.Tensor, words: Sequence[str], method: str,
                 game: Optional[WordGame] = None, base_value: Optional[float] = None,
                 full_value: Optional[float] = None):
        words = list(words)
        super().__init__(input_tokens=word_labels(words), output_tokens=[OUTPUT_NAME], seq_attr=seq_attr,
                         token_attr=seq_attr.reshape(1, -1))
        self.words = words
        self.method = method
        self._game = game
        self._values = {"base_value": base_value, "full_value": full_value}

    @property
    def prompt(self) -> str:
        return " ".join(self.words)

    def _value(self, name: str, present: bool) -> float:
        if self._values[name] is None:
            if self._game is None:
                raise ValueError(f"{name} is unknown: this result was built without its game or a {name}")
            self._values[name] = self._game.value(np.full(len(self.words), present))
        return float(self._values[name])

    @property
    def base_value(self) -> float:
        """``f("")``: the value with every word deleted (the baseline of the attribution)."""
        return self._value("base_value", False)

    @property
    def full_value(self) -> float:
        """``f(prompt)``: the value with every word present (the explained input)."""
        return self._value("full_value", True)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        values = self.seq_attr.detach().cpu().numpy()
        return values if dtype is None else values.astype(dtype)

    def __eq__(self, other) -> bool:
        if not isinstance(other, WordAttributionResult):
            return NotImplemented
        return (self.input_tokens == other.input_tokens and self.output_tokens == other.output_tokens
                and self.method == other.method and self.seq_attr.shape == other.seq_attr.shape
                and bool(torch.equal(self.seq_attr, other.seq_attr)))

    __hash__ = None  # mutable, compared by value

    def __repr__(self) -> str:
        values = ", ".join(f"{k!r}: {v:.4g}" for k, v in self.seq_attr_dict.items())
        return f"WordAttributionResult(method={self.method!r}, seq_attr={{{values}}})"


class WordAttribution(Attribution):
    """Per-word attributions of a black box ``f: Sequence[str] -> np.ndarray (n,)`` with a captum perturbation method.

    The captum convention of the package: ``attribute(prompt)`` returns a tensor (captum's contract), ``explain(prompt)``
    the rich :class:`WordAttributionResult`; like captum's ``LLMAttribution``, the class wraps a captum attribution
    *instance* built over the black box, e.g. ``WordAttribution(ShapleyValueSampling(f))``.

    Parameters
    ----------
    attr_method : captum.attr.Attribution
        One of :data:`METHODS`' classes (or a subclass) built over ``f``: ``FeatureAblation(f)``
        (``f(prompt) - f(prompt without word)``), ``ShapleyValues(f)`` (exact, all ``d!`` orderings, at most
        :data:`MAX_SHAPLEY_VALUES_WORDS` words), ``ShapleyValueSampling(f)``, ``KernelShap(f)``, ``Lime(f, ...)``
        (sampled). Its own configuration (e.g. Lime's ``interpretable_model``) is kept; each call runs a shallow copy
        whose ``forward_func`` is the prompt's :class:`~captum_diffusion.words.WordGame` over ``f``, so each
        sub-prompt reaches ``f`` once. Deprecated for one release: the black box ``f`` itself, with ``method``.
    method : str, optional
        Deprecated (with ``f`` as first argument): a name of :data:`METHODS` (default ``"shapley_sampling"``); then
        ``attribute()`` keeps returning the :class:`WordAttributionResult` for one release.
    dtype : torch.dtype, default torch.float64
        dtype of the mask tensors and of the attributions (captum 0.9 still sums Shapley contributions in float32,
        so expect ~1e-6 agreement).
    progress : bool, default True
        captum's tqdm bar (``show_progress``).
    seed : int or None, default 0
        The sampled methods (:data:`SAMPLED_METHODS`) draw from torch's global RNG seeded with it inside a fork
        (``torch.random.fork_rng``; python's and numpy's global RNGs are seeded too and restored), so two calls
        agree exactly and the caller's RNG state is untouched; ``None`` draws from the global RNGs as captum does.
    **init_kwargs
        Deprecated form only: keyword arguments of the captum class (e.g. ``interpretable_model`` for Lime).

    Attributes
    ----------
    method : str
        The name of the wrapped method in :data:`METHODS` (``"shapley_sampling"``, ...).
    f : callable
        The black box, ``attr_method.forward_func`` (also captum's ``forward_func``).
    last_game : WordGame or None
        The game of the latest call (counts the calls to ``f``).

    Examples
    --------
    >>> from captum.attr import ShapleyValueSampling
    >>> attribution = WordAttribution(ShapleyValueSampling(f), seed=0)
    >>> attribution.attribute("a red circle", n_samples=25)     # tensor (3,) in the units of f
    >>> attribution.explain("a red circle", n_samples=25)       # WordAttributionResult (captum's LLMAttributionResult)
    """

    def __init__(self, attr_method, method: Optional[str] = None, *, dtype: torch.dtype = torch.float64,
                 progress: bool = True, seed: Optional[int] = 0, **init_kwargs: Any):
        self._legacy = not isinstance(attr_method, Attribution)
        attr_method = (_legacy_method(attr_method, method, init_kwargs) if self._legacy
                       else _check_method(attr_method, method, init_kwargs))
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise TypeError(f"dtype must be a floating point torch dtype, got {dtype}")
        if not isinstance(progress, bool):
            raise TypeError(f"progress must be a bool, got {type(progress).__name__} {progress!r}")
        super().__init__(attr_method.forward_func)
        self.attr_method = attr_method
        self.f = attr_method.forward_func
        self.method = _method_name(attr_method)
        self.dtype = dtype
        self.progress = progress
        self.seed = None if seed is None else checks.seed(seed)
        self.last_game: WordGame | None = None  # the game of the latest call (counts calls to f)

    def attribute(self, prompt: str | Sequence[str], **captum_kwargs: Any) -> torch.Tensor:
        """Attributions of the words of ``prompt`` as a tensor (captum's contract).

        Parameters
        ----------
        prompt : str or sequence of str
            The prompt, or its words.
        **captum_kwargs
            As :meth:`explain`.

        Returns
        -------
        torch.Tensor
            ``(d,)`` of ``dtype``, one value per word in the units of ``f``: ``explain(prompt).seq_attr``.
            Deprecated form (``WordAttribution(f, "method")``): the :class:`WordAttributionResult` itself, with a
            ``DeprecationWarning``, for one release.
        """
        result = self.explain(prompt, **captum_kwargs)
        if self._legacy:
            warnings.warn("WordAttribution(f, method).attribute() returns a WordAttributionResult for one more "
                          "release; use explain() for the result, or WordAttribution(captum_method(f)), whose "
                          "attribute() returns the tensor (d,) as captum's attribute() does", DeprecationWarning,
                          stacklevel=2)
            return result
        return result.seq_attr

    def explain(self, prompt: str | Sequence[str], **captum_kwargs: Any) -> WordAttributionResult:
        """Attributions of the words of ``prompt`` with their labels, values and plots.

        Parameters
        ----------
        prompt : str or sequence of str
            The prompt, or its words (split on whitespace; a repeated word is labelled ``a#0``, ``a#1``).
        **captum_kwargs
            Go to the captum method's ``attribute``: ``n_samples`` (sampled methods), ``perturbations_per_eval``
            (default 16, captum's is 1, so that ``f`` gets sub-prompts in batches), ``show_progress`` (default:
            ``progress``), ``feature_mask`` (a group id per word, ``(d,)``). ``inputs``, ``baselines``, ``target``,
            ``additional_forward_args`` and ``return_input_shape`` are set here.

        Returns
        -------
        WordAttributionResult
            captum's ``LLMAttributionResult``: ``seq_attr`` ``(d,)`` of ``dtype`` in the units of ``f``,
            ``input_tokens`` the word labels, plus ``base_value`` = ``f("")`` and ``full_value`` = ``f(prompt)``.

        Raises
        ------
        TypeError, ValueError
            For unknown or invalid arguments, for ``n_samples`` (given or captum's default) below ``d + 1`` with
            the regressions ``kernel_shap`` / ``lime`` over ``d`` words (fewer spread one value over several
            words), and for ``shapley_values`` over more than :data:`MAX_SHAPLEY_VALUES_WORDS` words.

        Notes
        -----
        ``kernel_shap`` on a one-word prompt computes ``f(prompt) - f("")`` directly (captum samples no coalition
        there).
        """
        captum_kwargs = self._check_captum_kwargs(captum_kwargs)
        game = WordGame(self.f, prompt)
        self._check_game(game, captum_kwargs)
        self.last_game = game

        def forward(masks: torch.Tensor) -> torch.Tensor:
            return torch.as_tensor(game(masks), dtype=self.dtype)

        algorithm = copy.copy(self.attr_method)  # captum's LLMAttribution also runs a shallow copy
        algorithm.forward_func = forward
        if self.method == "kernel_shap" and game.n_words == 1:  # captum samples coalition sizes 1..d-1: none for d = 1
            algorithm = captum.attr.FeatureAblation(forward)  # one player: its Shapley value is f(prompt) - f("")
            captum_kwargs.pop("n_samples", None)
        inputs = torch.ones(1, game.n_words, dtype=self.dtype)
        seeded = self.seed is not None and self.method in SAMPLED_METHODS
        with seeded_rngs(self.seed) if seeded else contextlib.nullcontext():
            attributions = algorithm.attribute(inputs, baselines=torch.zeros_like(inputs), **captum_kwargs)
        seq_attr = attributions.detach().reshape(game.n_words).to(self.dtype)
        return WordAttributionResult(seq_attr=seq_attr, words=game.words, method=self.method, game=game)

    def _check_game(self, game: WordGame, captum_kwargs: dict) -> None:
        """``ValueError`` where the method cannot explain this game well; turns ``feature_mask`` into captum's."""
        if self.method == "shapley_values" and game.n_words > MAX_SHAPLEY_VALUES_WORDS:
            raise ValueError(
                f"captum's ShapleyValues walks all {game.n_words}! orderings; use at most {MAX_SHAPLEY_VALUES_WORDS} "
                "words, or method='shapley_sampling' with n_samples=..., or shap_adapters.explain_prompt("
                "algorithm='exact') for exact values over 2**d sub-prompts (up to 12 words)"
            )
        if "feature_mask" in captum_kwargs:
            captum_kwargs["feature_mask"] = _feature_mask(captum_kwargs["feature_mask"], game.n_words)
        if self.method in REGRESSION_METHODS and game.n_words > 1:
            n_samples = captum_kwargs.get("n_samples", self._default("n_samples"))
            mask = captum_kwargs.get("feature_mask")
            n_features = game.n_words if mask is None else int(mask.max()) + 1
            if n_samples < n_features + 1:
                raise ValueError(
                    f"n_samples={n_samples}{'' if 'n_samples' in captum_kwargs else ' (captum default)'} is too few "
                    f"for {self.method} over {n_features} words: a regression needs at least d + 1 = "
                    f"{n_features + 1} samples, with fewer it spreads one value over several words; pass "
                    f"n_samples={max(25, 5 * n_features)} or more")

    def _default(self, name: str):
        """The default of the captum method's ``attribute`` argument ``name``."""
        return inspect.signature(type(self.attr_method).attribute).parameters[name].default

    def _check_captum_kwargs(self, captum_kwargs: dict) -> dict:
        fixed = set(_FIXED) & set(captum_kwargs)
        if fixed:
            raise TypeError(f"WordAttribution.attribute sets {sorted(fixed)} itself; do not pass them")
        accepted = {name for name, p in inspect.signature(type(self.attr_method).attribute).parameters.items()
                    if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and name != "self"} - set(_FIXED)
        unknown = sorted(set(captum_kwargs) - accepted)
        if unknown:
            hint = (f"; n_samples is for the sampled methods {sorted(SAMPLED_METHODS)}"
                    if "n_samples" in unknown else "")
            raise TypeError(f"method {self.method!r} does not take {unknown}; it takes {sorted(accepted)}{hint}")
        captum_kwargs.setdefault("perturbations_per_eval", 16)
        captum_kwargs.setdefault("show_progress", self.progress)
        checks.positive_int(captum_kwargs["perturbations_per_eval"], "perturbations_per_eval")
        if not isinstance(captum_kwargs["show_progress"], bool):
            raise TypeError(f"show_progress must be a bool, got {captum_kwargs['show_progress']!r}")
        if self.method in SAMPLED_METHODS and "n_samples" in captum_kwargs:
            least = SAMPLED_METHODS[self.method]
            n_samples = captum_kwargs["n_samples"]
            if least == 1:
                checks.positive_int(n_samples, "n_samples")
            else:
                checks.int_at_least(n_samples, least, f"n_samples ({self.method} fits a regression to the samples)")
        return captum_kwargs

    def __repr__(self) -> str:
        seed = f", seed={self.seed}" if self.method in SAMPLED_METHODS else ""
        return f"WordAttribution(method={self.method!r}{seed})"


def _method_name(attr_method: Attribution) -> str:
    """The name in :data:`METHODS` of a captum attribution instance (of one of their classes or a subclass)."""
    for cls in type(attr_method).__mro__:
        for name, known in METHODS.items():
            if cls is known:
                return name
    raise TypeError(f"attr_method must be a captum perturbation attribution over f, an instance of one of "
                    f"{[cls.__name__ for cls in METHODS.values()]} (e.g. ShapleyValueSampling(f)); got "
                    f"{type(attr_method).__name__}")


def _check_method(attr_method: Attribution, method, init_kwargs: dict) -> Attribution:
    """The new form: a captum instance over ``f``, configured already (no method name, no init keywords)."""
    if method is not None or init_kwargs:
        given = (["method"] if method is not None else []) + sorted(init_kwargs)
        raise TypeError(f"WordAttribution(attr_method) takes no {given}: configure the captum instance instead, "
                        f"e.g. WordAttribution(Lime(f, interpretable_model=...))")
    _method_name(attr_method)
    if not callable(attr_method.forward_func):
        raise TypeError(f"attr_method.forward_func must be the black box f: Sequence[str] -> np.ndarray (n,), got "
                        f"{type(attr_method.forward_func).__name__}")
    return attr_method


def _legacy_method(f, method: Optional[str], init_kwargs: dict) -> Attribution:
    """The deprecated form ``WordAttribution(f, "method", **init_kwargs)`` as a captum instance over ``f``."""
    if not callable(f):
        raise TypeError(f"f must be callable: Sequence[str] -> np.ndarray (n,), got {type(f).__name__}; or give a "
                        f"captum attribution over it, e.g. WordAttribution(ShapleyValueSampling(f))")
    method = "shapley_sampling" if method is None else method
    if method not in METHODS:
        raise ValueError(f"method must be one of {sorted(METHODS)}, got {method!r}")
    warnings.warn(f"WordAttribution(f, {method!r}) is deprecated and goes in the next release: wrap a captum "
                  f"attribution as captum's LLMAttribution does, WordAttribution({METHODS[method].__name__}(f)); "
                  f"its attribute() returns the tensor (d,), explain() the WordAttributionResult",
                  DeprecationWarning, stacklevel=3)
    return METHODS[method](f, **init_kwargs)


def _feature_mask(mask, n_words: int) -> torch.Tensor:
    """captum's ``feature_mask`` for one prompt: a group id per word, ``(d,)`` or ``(1, d)``, ids ``0..k-1``."""
    if mask is None:
        return None
    values = checks.numeric_array(mask, "feature_mask")
    if values.size != n_words or values.ndim not in (1, 2) or (values.ndim == 2 and values.shape[0] != 1):
        raise ValueError(f"feature_mask must hold one group id per word, shape ({n_words},) or (1, {n_words}); got "
                         f"shape {values.shape}")
    ids = np.unique(values)
    if (values != np.round(values)).any() or ids[0] != 0 or ids[-1] != len(ids) - 1:
        raise ValueError(f"feature_mask must use the group ids 0..k-1 with none missing (ints), got {ids.tolist()}")
    return torch.as_tensor(values.reshape(1, n_words), dtype=torch.long)


@contextlib.contextmanager
def seeded_rngs(seed: int) -> Iterator[None]:
    """Inside: torch's CPU RNG, python's ``random`` and numpy's global RNG seeded with ``seed``; on exit all
    three are back in the state they had (torch's through ``torch.random.fork_rng``), also on an exception."""
    seed = checks.seed(seed)
    python_state, numpy_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(seed)
        random.seed(seed)
        np.random.seed(seed)
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


def shapley_from_values(masks: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Exact Shapley values ``(d,)`` from a full table of coalition values (e.g. ``WordGame.all_coalitions()``).

    ``masks``: bool ``(2**d, d)``, every coalition once; ``values``: ``(2**d,)``. Uses the Shapley formula
    ``phi_i = sum_S |S|! (d-1-|S|)! / d! [v(S + i) - v(S)]`` over all ``S`` without ``i``, the empty one included.
    """
    if np.ndim(masks) != 2:
        raise ValueError(f"masks must be a bool matrix (2**d, d), got shape {np.shape(masks)}")
    masks = checks.binary_matrix(masks, np.shape(masks)[1], "masks", "word")
    n, d = masks.shape
    if n != 2**d or len(np.unique(masks, axis=0)) != n:
        raise ValueError(f"masks must list each of the 2**{d} = {2 ** d} coalitions once, got {n} rows")
    values = checks.numeric_array(values, "values")
    if values.shape != (n,):
        raise ValueError(f"values must hold one value per coalition, shape ({n},), got shape {values.shape}")
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
