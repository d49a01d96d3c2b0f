"""``--words shap-multifidelity`` in a run: the runner, its planning recorder, and its proxy settings.

The estimator is :func:`captum_diffusion.words.multifidelity.multifidelity_shapley`: every sub-prompt of the prompt
is played by a cheap *proxy* game (the same sub-prompts and seed, generated at ``--proxy-steps`` denoising steps
and/or ``--proxy-size`` pixels) and a few by the full game (the run's settings); the Shapley values of the full
game are the proxy's plus a correction estimated from the full images, with a standard error.

Choices made here (documented in the flags' help):

- **Seeds**: each seed's game is estimated on its own (the sampler seeded by the image seed), so the values per
  seed are stored like every method's; the standard error of their mean (:func:`combine_seeds`) adds the
  between-seed variance of the estimates to their sampling variance (conservative: the spread between seeds
  already holds part of the sampling noise).
- **Proxy**: none unless ``--proxy-steps`` or ``--proxy-size`` is given. ``benchmarks/cost.md`` measured few-step
  proxies of the ShapesWorld model against the full game: their payoffs correlate at r = 0.24-0.93, which removes at
  most r**2 of the correction's variance while the proxy costs 16-41% of a full image, so the same budget spent on
  full images (the stratified paired sampler with its additive control) ranked words better. A proxy pays where it
  tracks the full game closely (e.g. a distilled model's few steps); measure it with ``benchmarks/cost.py``. The
  cost ratio that spends the budget is ``--proxy-cost`` when given, else the steps
  ratio times the pixels ratio (an estimate: a proxy image also pays the fixed cost of decoding and scoring); the
  manifest reports the ratio measured on this run's own generations (``runs.cost``).
- **Budget**: ``--budget`` (default :data:`DEFAULT_BUDGET`) is the fraction of exact's ``2**d`` images per seed,
  in full-image equivalents. When it cannot pay the proxy plus two full pairs per coalition size, the full game
  is sampled alone (no proxy image); when it cannot pay even that (short prompts), the values are exact (every
  sub-prompt in full, exact's cost). The manifest says which, per prompt and seed (``stopped``).
- **Planning**: the proxy's sub-prompts and the full pairs of the first allocation are drawn from the seed
  whatever the payoffs, so they are planned; with ``--until top-K`` the later rounds' full images depend on the
  payoffs and are generated while explaining (:func:`record` plans the requests that do not change with the
  payoffs).
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover - annotations only
    from captum_diffusion.generation.settings import GenerationSettings

#: ``--budget`` of shap-multifidelity when not given: half of exact's cost (with a quarter-steps proxy, the least
#: budget that pays the proxy and two full pairs per coalition size from 6 words on).
DEFAULT_BUDGET = 0.5
#: The name of the method in ``runs.methods.REGISTRY``.
NAME = "shap-multifidelity"

_UNTIL = re.compile(r"top-([1-9][0-9]*)")


def parse_until(text) -> int | None:
    """``--until``: ``"top-K"`` -> ``K`` (``None`` -> ``None``); ``ValueError`` naming the flag otherwise."""
    if text is None:
        return None
    match = _UNTIL.fullmatch(str(text).strip()) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"until (--until) must be 'top-K' with K a positive integer, e.g. 'top-3', got {text!r}")
    return int(match.group(1))


def proxy_for(config, run_settings: "GenerationSettings | None") -> tuple["GenerationSettings | None", float, str]:
    """The proxy game of a run: its settings over the run's, the cost ratio that spends the budget, and its source.

    Parameters
    ----------
    config : RunConfig
        ``proxy_steps``, ``proxy_size``, ``proxy_cost``.
    run_settings : GenerationSettings or None
        The run's full settings (the model's defaults filled in); ``None`` or fields ``None`` when unknown.

    Returns
    -------
    settings : GenerationSettings or None
        Overrides of the run's settings (``None``: no cheaper proxy, the sampler alone).
    cost : float
        A proxy image's time relative to a full one, in (0, 1] (0.0 without proxy).
    source : str
        Where ``cost`` comes from: ``"--proxy-cost"`` or ``"estimate: ..."``.

    Raises
    ------
    ValueError
        Naming ``--proxy-steps`` / ``--steps`` when the run's steps are unknown here or the proxy is not cheaper.
    """
    from captum_diffusion.generation.settings import GenerationSettings

    steps = None if run_settings is None else run_settings.num_inference_steps
    size = None if run_settings is None or run_settings.height is None else (run_settings.height, run_settings.width)
    if config.proxy_steps is None and config.proxy_size is None:
        return None, 0.0, "no proxy (none asked for: --proxy-steps / --proxy-size)"
    proxy_steps = config.proxy_steps  # None with only --proxy-size: the run's steps
    overrides = {}
    if proxy_steps is not None and proxy_steps != steps:
        overrides["num_inference_steps"] = proxy_steps
    if config.proxy_size is not None and tuple(config.proxy_size) != size:
        overrides["height"], overrides["width"] = config.proxy_size
    if not overrides:
        return None, 0.0, "no proxy: its settings are the run's"
    settings = GenerationSettings(**overrides)
    if config.proxy_cost is not None:
        return settings, float(config.proxy_cost), "--proxy-cost"
    if steps is None:
        raise ValueError(f"{NAME}: the run's steps are not known here, so the proxy's cost cannot be estimated; "
                         "pass --steps or --proxy-cost")
    proxy_steps = steps if proxy_steps is None else proxy_steps
    ratio, why = proxy_steps / steps, f"estimate: {proxy_steps}/{steps} steps"
    if config.proxy_size is not None and size is not None:
        ratio *= (config.proxy_size[0] * config.proxy_size[1]) / (size[0] * size[1])
        why += f" x {config.proxy_size[0]}x{config.proxy_size[1]}/{size[0]}x{size[1]} pixels"
    if ratio >= 1:
        raise ValueError(f"{NAME}: the proxy ({why[len('estimate: '):]}) is not cheaper than a full image; choose "
                         "--proxy-steps below --steps (or a smaller --proxy-size)")
    return settings, ratio, why


def run(f, config, seed: int, payoff_at=None):
    """The runner of ``shap-multifidelity`` (see ``runs.methods``): one seed's game.

    Parameters
    ----------
    f : PromptScore or RecordingPayoff
        The payoff at the run's settings (the full game).
    config : RunConfig
        ``budget``, ``until``, and the proxy's options (:func:`proxy_for`).
    seed : int
        The image seed, also the sampler's seed.
    payoff_at : runs.methods.PayoffAt, optional
        The payoff at the proxy's settings, with the run's settings; ``None``: no proxy (the stratified paired
        sampler on the full game alone).

    Returns
    -------
    runs.methods.SeedEstimate
        Values ``(d,)`` (payoff units), ``f("")``, standard errors ``(d,)`` (sampling error for this seed's game;
        0 when exact) with their degrees of freedom, and ``cost``: ``full_images``, ``proxy_images`` (its reference
        image, the full prompt at the proxy's settings, included), ``exact_images`` (``2**d``),
        ``planned_proxy_cost``, ``proxy_cost_source``, ``proxy_settings``, ``budget``, ``stopped``.
    """
    from captum_diffusion.runs.payoffs import SeedEstimate
    from captum_diffusion.words import WordGame

    game = WordGame(f, f.prompt)
    d = game.n_words
    if payoff_at is None:
        settings, cost, source = None, 0.0, "no proxy: the caller offers no other settings"
    else:
        settings, cost, source = proxy_for(config, payoff_at.run_settings)
    proxy = None if settings is None else WordGame(payoff_at(settings), f.prompt)
    budget = DEFAULT_BUDGET if config.budget is None else config.budget
    top_k = parse_until(config.until)
    top_k = top_k if top_k is not None and top_k < d else None
    estimate, stopped = _within_budget(game, proxy, budget, cost, seed, top_k)
    proxy_images = estimate.cost.proxy_images + (1 if estimate.cost.proxy_images else 0)
    return SeedEstimate(
        values=np.asarray(estimate.values, dtype=np.float64), base=float(f([""])[0]),
        standard_errors=np.asarray(estimate.standard_errors, dtype=np.float64),
        degrees_of_freedom=np.asarray(estimate.degrees_of_freedom, dtype=np.float64), exact=estimate.exact,
        cost={"full_images": int(estimate.cost.full_images), "proxy_images": int(proxy_images),
              "exact_images": 2**d, "planned_proxy_cost": float(cost), "proxy_cost_source": source,
              "proxy_settings": None if settings is None else settings.keywords(), "budget": budget,
              "stopped": stopped})


def _within_budget(game, proxy, budget: float, cost: float, seed: int, top_k: int | None):
    """``(ShapleyEstimate, why it stopped)`` within ``budget``: with the proxy; when the budget cannot pay the
    proxy and two full pairs per coalition size, the full game's stratified paired sampler alone; when it cannot
    pay even that, exact values (every sub-prompt in full: exact's cost)."""
    from captum_diffusion.words.multifidelity import multifidelity_shapley

    attempts = ([(proxy, cost)] if proxy is not None else []) + [(None, None)]
    reasons = []
    for game_proxy, proxy_cost in attempts:
        try:
            estimate = multifidelity_shapley(game, game_proxy, budget, proxy_cost=proxy_cost, seed=seed,
                                             until_top_k=top_k)
        except ValueError as error:
            if "too small" not in str(error):
                raise
            reasons.append(str(error))
            continue
        note = "" if not reasons else f" (without the proxy: {reasons[0]})"
        return estimate, estimate.stopped + note
    estimate = multifidelity_shapley(game, None, 1.0, seed=seed)
    return estimate, f"exact: budget {budget:g} is too small for {game.n_words} words ({reasons[-1]})"


def record(f, config, seed: int, payoff_at=None) -> None:
    """What planning records of ``shap-multifidelity``: the requests that do not depend on the payoffs.

    :func:`run` is played twice on placeholder payoffs with different salts; the calls both make alike, from the
    first on (the ends, the first allocation of full pairs, the proxy's sub-prompts), are replayed on ``f`` and
    ``payoff_at`` in their order. Without ``--until`` that is every call; with it, the rounds chosen from the
    payoffs differ and are left to the explaining process.
    """
    logs = [_logged_calls(f.prompt, config, seed, payoff_at, salt) for salt in (1, 2)]
    for (settings, prompts), other in zip(*logs):
        if (settings, prompts) != other:
            break
        (f if settings is None else payoff_at(settings))(list(prompts))


def _logged_calls(prompt: str, config, seed: int, payoff_at, salt: int) -> list[tuple]:
    """The calls :func:`run` makes on placeholder payoffs of ``salt``: ``[(settings or None, sub-prompts)]``."""
    from captum_diffusion.runs.payoffs import PayoffAt, RecordingPayoff

    log: list[tuple] = []

    class Logged(RecordingPayoff):
        def __init__(self, settings):
            super().__init__(prompt, salt=salt)
            self.settings = settings

        def __call__(self, prompts):
            prompts = [prompts] if isinstance(prompts, str) else list(prompts)
            log.append((self.settings, tuple(prompts)))
            return super().__call__(prompts)

    others: dict = {}
    at = None if payoff_at is None else PayoffAt(lambda s: others.setdefault(s, Logged(s)), payoff_at.run_settings)
    run(Logged(None), config, seed, at)
    return log


def combine_seeds(estimates) -> tuple[np.ndarray, np.ndarray, str]:
    """Standard errors of the mean over seeds of per-seed estimates that state their own.

    Parameters
    ----------
    estimates : sequence of runs.methods.SeedEstimate
        One per seed, each with ``standard_errors`` ``(d,)`` and ``degrees_of_freedom``.

    Returns
    -------
    standard_errors : numpy.ndarray
        ``(d,)``, payoff units: one seed: its own; several: ``sqrt(sum(se_s**2) / S**2 + var_s(values) / S)``
        (sampling plus between-seed; exact estimates: between-seed alone).
    degrees_of_freedom : numpy.ndarray
        ``(d,)``, Welch-Satterthwaite (``inf``: normal).
    source : str
        A key of ``runs.store.ERROR_SOURCES``: ``"exact"`` (one exact seed), ``"seeds"`` (exact seeds) or
        ``"estimator"``.
    """
    values = np.array([e.values for e in estimates], dtype=np.float64)
    n, d = values.shape
    sampling = np.array([e.standard_errors for e in estimates], dtype=np.float64) ** 2 / n**2  # (S, d)
    dfs = np.array([np.broadcast_to(e.degrees_of_freedom, (d,)) for e in estimates], dtype=np.float64)
    exact = all(e.exact for e in estimates)
    if n == 1:
        return np.sqrt(sampling[0]), dfs[0], "exact" if exact else "estimator"
    between = values.var(0, ddof=1) / n
    if exact:
        return np.sqrt(between), np.full(d, n - 1.0), "seeds"
    total = sampling.sum(0) + between
    with np.errstate(divide="ignore", invalid="ignore"):
        denominator = (np.where(sampling > 0, sampling**2 / dfs, 0.0)).sum(0) + between**2 / (n - 1)
        df = np.where(denominator > 0, total**2 / np.where(denominator > 0, denominator, 1.0), np.inf)
    return np.sqrt(total), df, "estimator"


def seeds_cost(estimates) -> dict:
    """One prompt's cost of the method over its seeds: the per-seed ``cost`` entries summed (images), with the
    settings of the proxy and why each seed stopped."""
    costs = [e.cost for e in estimates]
    summed = {key: sum(c[key] for c in costs) for key in ("full_images", "proxy_images", "exact_images")}
    first = costs[0]
    return summed | {key: first[key] for key in ("planned_proxy_cost", "proxy_cost_source", "proxy_settings",
                                                 "budget")} | {"stopped": [c["stopped"] for c in costs]}


def uses(config) -> bool:
    """Whether ``config`` may run shap-multifidelity on some prompt (named in ``--words``, or the default with
    ``--budget`` below 1)."""
    chosen = [m for m in config.words if m != "interactions"]
    return NAME in chosen or (not chosen and config.budget is not None and config.budget < 1)


def check_model(config, model) -> None:
    """Refuse, after the model is loaded and before the run folder is written, a proxy the model cannot make or
    that is not cheaper: :func:`proxy_for` on the run's settings (the model's defaults filled in), and the proxy's
    settings given to a ``TextToImage`` (sizes the pipeline refuses). ``ValueError`` naming the flag."""
    if not uses(config):
        return
    from captum_diffusion.generation import TextToImage

    run_settings = model.generation_settings(config)
    settings, _, _ = proxy_for(config, run_settings)
    if settings is not None:
        try:
            TextToImage(model.pipeline, **run_settings.replace(**settings.keywords()).keywords())
        except (ValueError, TypeError) as error:
            raise ValueError(f"{NAME}: the proxy's settings (--proxy-steps / --proxy-size) cannot be generated: "
                             f"{error}") from None
