"""The word-attribution methods a run can use: one registry, :data:`REGISTRY`.

Each :class:`WordMethod` says everything the runs wing needs to know about a method: its name (the ``--words``
value), how to run it on a prompt's payoff (its *runner*), whether the sub-prompts it asks for can be planned
before any image exists and why (or why not), whether its draws depend on the seed, and what it costs in images.
``RunConfig`` validates ``--words`` against :data:`REGISTRY`, ``runs.plan`` records the planned methods' sub-prompts
with their runners (or a cheaper *recorder*), and ``runs.execute`` runs them on the real payoffs.

Adding a method is one :func:`register` call with its runner in this module (and, when the sub-prompts it asks for
do not depend on the payoffs, ``planned=True`` with the reason; ``tests/test_distributed.py`` checks that claim by
recording it with unrelated placeholder payoffs).

A runner is called as ``runner(f, config, seed, payoff_at)`` and returns ``(values (d,), f(""))``:

- ``f``: the payoff of the prompt at the run's generation settings (a ``scoring.PromptScore``; a
  ``plan.RecordingPayoff`` while planning), callable on sub-prompts -> float64 ``(n,)``, with ``f.prompt``;
- ``config``: the ``RunConfig``; ``seed``: the seed of the game;
- ``payoff_at``: a :class:`PayoffAt`, ``payoff_at(settings) -> f'``, the payoff of the same prompt and seed
  generated at other settings (a ``generation.settings.GenerationSettings`` whose fields that are not ``None``
  replace the run's, e.g. ``GenerationSettings(num_inference_steps=4)`` for a cheap proxy game), and
  ``payoff_at.run_settings``, the run's own; ``None`` when the caller offers no other settings. Images asked for
  through it are planned, deduplicated and cached like the others, keyed by their own settings. Most methods
  ignore it.

A runner may return a :class:`SeedEstimate` instead of the pair, to state more than the values: its standard
errors (stored with the run, replacing the ones derived between seeds) and its cost in images (the manifest's cost
accounting, ``runs.cost``).
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable

import numpy as np

from captum_diffusion.runs.payoffs import PayoffAt, SeedEstimate
from captum_diffusion.words.game import MAX_EXACT_WORDS, WordGame

#: shap's default sampling budget (``max_evals``) of the permutation and partition explainers.
SHAP_DEFAULT_EVALS = 500

Runner = Callable[..., "tuple[np.ndarray, float]"]


@dataclass(frozen=True)
class WordMethod:
    """One word-attribution method of a run.

    Parameters
    ----------
    name : str
        The ``--words`` value, e.g. ``"shap-exact"``.
    run : callable
        ``run(f, config, seed, payoff_at) -> (values float64 (d,), base value f(""))``; see the module docstring.
    planned : bool
        Whether the sub-prompts it asks for are planned before any image is made: true only when they do not
        depend on the payoff values.
    why : str
        Why recording its sub-prompts on placeholder payoffs is valid (planned), or why it is not (unplanned).
    seeded : bool
        Whether the sub-prompts it asks for depend on the seed (a planned method that is not seeded is recorded
        once for all seeds).
    cost : callable
        ``cost(d, config) -> int``: at most how many distinct images (sub-prompts, the empty and the full prompt
        included) it needs per seed on a ``d``-word prompt.
    record : callable, optional
        A cheaper stand-in for ``run`` while planning, with the same signature and the same calls to ``f`` in the
        same order (its return value is ignored); ``None``: planning runs ``run``.
    """

    name: str
    run: Runner
    planned: bool
    why: str
    seeded: bool
    cost: Callable[[int, object], int]
    record: Runner | None = None

    def recorder(self) -> Runner:
        """What planning calls on a ``RecordingPayoff``: ``record`` when given, else ``run``."""
        return self.record if self.record is not None else self.run


#: Every word-attribution method of a run, by name, in the order ``--words`` lists them.
REGISTRY: dict[str, WordMethod] = {}


def register(method: WordMethod) -> WordMethod:
    """Add ``method`` to :data:`REGISTRY` (``ValueError`` when its name is taken); returns it."""
    if method.name in REGISTRY:
        raise ValueError(f"a word-attribution method named {method.name!r} is already registered")
    REGISTRY[method.name] = method
    return method


def get(name: str) -> WordMethod:
    """The registered method ``name``; ``ValueError`` naming the valid ones otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"words: unknown word-attribution method {name!r}; valid: {list(REGISTRY)}") from None


def word_estimate(method: str, f, config, seed: int, payoff_at: PayoffAt | None = None) -> SeedEstimate:
    """What one word-attribution ``method`` finds on the game of ``f``, as a :class:`SeedEstimate`.

    Parameters
    ----------
    method : str
        A name in :data:`REGISTRY`.
    f : callable
        The payoff (sub-prompts -> float64 ``(n,)``, with ``f.prompt``): a ``PromptScore`` or a ``RecordingPayoff``.
    config : RunConfig
        The run's settings (``lime_samples``, ``max_evals``, ``budget``, ...).
    seed : int
        Seed of the method's draws.
    payoff_at : PayoffAt, optional
        The payoff at other generation settings (see the module docstring); ``None``: none offered (a method that
        would use a proxy game then does without).

    Returns
    -------
    SeedEstimate
        Its values ``(d,)`` and ``f("")``, with standard errors and cost when the method states them.
    """
    found = get(method).run(f, config, seed, payoff_at)
    if isinstance(found, SeedEstimate):
        return found
    values, base = found
    return SeedEstimate(np.asarray(values, dtype=np.float64), float(base))


def word_values(method: str, f, config, seed: int, payoff_at: PayoffAt | None = None) -> tuple[np.ndarray, float]:
    """``(values (d,), f(""))`` of one word-attribution ``method`` on the game of ``f``: :func:`word_estimate`'s
    values and base (same parameters)."""
    estimate = word_estimate(method, f, config, seed, payoff_at)
    return estimate.values, estimate.base


def _empty(f) -> float:
    """``f("")``, asked after the explainer: its batches decide the images' rounding."""
    return float(f([""])[0])


# ------------------------------------------------------------------------------------------------------- shap
def _shap(algorithm: str) -> Runner:
    def run(f, config, seed, payoff_at=None):
        import shap_adapters

        explanation = shap_adapters.explain_prompt(f.prompt, f, algorithm=algorithm,
                                                   max_evals=None if algorithm == "exact" else config.max_evals,
                                                   seed=seed, progress=False)
        return np.asarray(explanation.values, dtype=np.float64), float(explanation.base_values)

    run.__name__ = run.__qualname__ = f"shap_{algorithm}"
    run.__doc__ = f"shap's {algorithm} explainer on the word game of ``f`` (``shap_adapters.explain_prompt``)."
    return run


def every_subset(f, config=None, seed=None, payoff_at=None) -> None:
    """Ask ``f`` for every subset of its prompt's words, as shap's exact explainer does, without shap.

    One call with the ``2**d`` sub-prompts in shap's order (the binary-reflected Gray code of the masks, the last
    word as the lowest bit), so the plan batches the images exactly as exact SHAP then asks for them. Refuses more
    than :data:`MAX_EXACT_WORDS` words (``ValueError``), as shap_adapters does."""
    game = WordGame(f, f.prompt)
    d = game.n_words
    if d > MAX_EXACT_WORDS:
        raise ValueError(f"shap-exact over {d} words needs 2**{d} sub-prompts; exact is limited to "
                         f"{MAX_EXACT_WORDS} words (use shap-permutation)")
    codes = np.arange(2**d)
    gray = codes ^ (codes >> 1)
    game(((gray[:, None] >> np.arange(d - 1, -1, -1)) & 1).astype(bool))


def _shap_budget(d: int, config) -> int:
    return min(2**d, config.max_evals or SHAP_DEFAULT_EVALS)


# ------------------------------------------------------------------------------------------------------- lime
def _lime(f, config, seed, payoff_at=None):
    """lime's text explainer on the word game of ``f`` (``lime_adapters.explain_prompt``), ``lime_samples``
    perturbations."""
    import lime_adapters

    explanation = lime_adapters.explain_prompt(f.prompt, f, num_samples=config.lime_samples, seed=seed)
    return lime_adapters.word_weights(explanation), _empty(f)


# ----------------------------------------------------------------------------------------------------- captum
def captum_methods() -> dict:
    """``words.attribution.METHODS``, captum's attribution classes by name, imported on first use (importing captum
    takes seconds, and a run without a captum method never needs it)."""
    from captum_diffusion.words.attribution import METHODS

    return METHODS


def __getattr__(name: str):
    if name == "CAPTUM_METHODS":  # the name this module imported eagerly before
        return captum_methods()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _captum_samples(name: str, d: int, config) -> dict:
    """``n_samples`` for captum's sampled methods from ``max_evals`` (``{}``: captum's default)."""
    if config.max_evals is None or name not in ("shapley_sampling", "kernel_shap", "lime"):
        return {}
    return {"n_samples": max(1, config.max_evals // d) if name == "shapley_sampling" else max(2, config.max_evals)}


def _captum(name: str) -> Runner:
    def run(f, config, seed, payoff_at=None):
        from captum_diffusion.words import WordAttribution

        options = _captum_samples(name, len(f.prompt.split()), config)
        values = WordAttribution(captum_methods()[name](f), seed=seed, progress=False).attribute(f.prompt, **options)
        return np.asarray(values, dtype=np.float64).reshape(-1), _empty(f)

    run.__name__ = run.__qualname__ = f"captum_{name}"
    run.__doc__ = f"captum's {name} over the words of ``f`` (``words.WordAttribution``)."
    return run


def _captum_cost(name: str) -> Callable[[int, object], int]:
    def cost(d: int, config) -> int:
        if name == "feature_ablation":
            return min(2**d, d + 2)  # the empty prompt, the prompt and each one-word ablation
        if name == "shapley_values":
            return 2**d
        samples = _captum_samples(name, d, config).get("n_samples")
        if samples is None:
            samples = inspect.signature(captum_methods()[name].attribute).parameters["n_samples"].default
        walked = samples * d if name == "shapley_sampling" else samples  # a permutation walks d prefixes
        return min(2**d, walked + 2)

    return cost


# ------------------------------------------------------------------------------------------- the registry
# A new method: one register(...) line here (before the views below), with its runner above.
_SEEDED_RNG = "drawn from the seeded torch RNG"
register(WordMethod("shap-exact", _shap("exact"), True, "every subset of the words, whatever the payoffs",
                    seeded=False, cost=lambda d, config: 2**d, record=every_subset))
register(WordMethod("shap-permutation", _shap("permutation"), True,
                    "permutations drawn from the seed, each walked forward and back whatever the payoffs",
                    seeded=True, cost=_shap_budget))
register(WordMethod("shap-partition", _shap("partition"), False,
                    "shap's partition explainer expands first the nodes with the largest payoff differences, so the "
                    "sub-prompts it asks for depend on the payoffs", seeded=False, cost=_shap_budget))
register(WordMethod("lime", _lime, True, "lime_samples perturbations drawn from the seed before the payoff is called",
                    seeded=True, cost=lambda d, config: min(2**d, config.lime_samples + 1)))
_CAPTUM_WHY = {
    "feature_ablation": (False, "the prompt and each one-word ablation"),
    "shapley_values": (False, "every ordering of the words"),
    "shapley_sampling": (True, f"permutations {_SEEDED_RNG}"),
    "kernel_shap": (True, f"coalitions {_SEEDED_RNG}; the fit never chooses samples"),
    "lime": (True, f"perturbations {_SEEDED_RNG}; the fit never chooses samples"),
}
for _name in _CAPTUM_WHY:  # the names of words.attribution.METHODS (captum is imported when one runs)
    _seeded, _why = _CAPTUM_WHY[_name]
    register(WordMethod(f"captum-{_name}", _captum(_name), True, _why, seeded=_seeded, cost=_captum_cost(_name)))



def _multifidelity(f, config, seed, payoff_at=None):
    """``runs.multifidelity.run``: multi-fidelity Shapley values of ``f``'s game (proxy images for every
    sub-prompt, full images for a few, with standard errors and cost)."""
    from captum_diffusion.runs import multifidelity

    return multifidelity.run(f, config, seed, payoff_at)


def _multifidelity_record(f, config, seed, payoff_at=None):
    from captum_diffusion.runs import multifidelity

    multifidelity.record(f, config, seed, payoff_at)


def _multifidelity_cost(d: int, config) -> int:
    """Full images within the budget plus a proxy image per sub-prompt and the proxy's reference image (a prompt
    too short for the budget gets exact values: ``2**d`` full images, fewer than that)."""
    from captum_diffusion.runs.multifidelity import DEFAULT_BUDGET

    budget = DEFAULT_BUDGET if getattr(config, "budget", None) is None else config.budget
    return int(np.ceil(budget * 2**d)) + 2**d - 1


register(WordMethod(
    "shap-multifidelity", _multifidelity, True,
    "the proxy's sub-prompts and the full pairs of the budget (with --until, of its first round) are drawn from the "
    "seed whatever the payoffs; with --until the later rounds' full images depend on the payoffs and are generated "
    "while explaining", seeded=True, cost=_multifidelity_cost, record=_multifidelity_record))

# Views of the registry for older imports (taken once, at import: RunConfig, the plan and the runs read REGISTRY).
#: Names of the registered methods, in order (``--words`` values besides ``interactions``).
WORD_METHODS = tuple(REGISTRY)
#: Planned methods: ``{name: (seeded, why recording is valid)}``.
PLANNED_METHODS: dict[str, tuple[bool, str]] = {m.name: (m.seeded, m.why) for m in REGISTRY.values() if m.planned}
#: Methods left to the explaining process: ``{name: why they cannot be planned}``.
UNPLANNED_METHODS: dict[str, str] = {m.name: m.why for m in REGISTRY.values() if not m.planned}
