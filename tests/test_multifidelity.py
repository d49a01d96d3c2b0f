"""Multi-fidelity Shapley values and their certainty, on closed-form games whose exact values are known."""
from __future__ import annotations

import numpy as np
import pytest

from captum_diffusion.words import WordGame, shapley_from_values
from captum_diffusion.words.certainty import certainty_statement, intervals, top_k_separated
from captum_diffusion.words.multifidelity import (coalition_masks, multifidelity_shapley, shapley_weights,
                                                  stack_seeds)


def polynomial_game(d: int, seed: int = 1, top: tuple[float, ...] = ()):
    """``v(S) = sum a_i + sum_{i<j} b_ij + c [0, 1, 2 in S] + 0.2 sin(7 sum_i i s_i)``: main effects, pairs, a
    triple and a rough part no low-order model captures; ``top`` overrides the first main effects."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=d)
    a[:len(top)] = top
    pairs = np.triu(rng.normal(size=(d, d)) * 0.3, 1)

    def game(masks):
        m = np.asarray(masks, dtype=float)
        return (m @ a + np.einsum("ni,ij,nj->n", m, pairs, m) + 0.5 * m[:, 0] * m[:, 1] * m[:, 2]
                + 0.2 * np.sin(7 * m @ np.arange(d)))
    return game


def proxy_of(game, d: int):
    """A correlated cheaper game: scaled, shifted and perturbed by another additive game."""
    b = np.linspace(-0.3, 0.3, d)
    return lambda masks: 0.9 * game(masks) + np.asarray(masks, dtype=float) @ b + 0.3


def exact_values(game, d: int) -> np.ndarray:
    masks = coalition_masks(np.arange(2**d), d)
    return shapley_from_values(masks, game(masks))


def test_shapley_weights_give_the_exact_values():
    d = 6
    game = polynomial_game(d)
    masks = coalition_masks(np.arange(2**d), d)
    assert np.allclose(shapley_weights(masks).T @ game(masks), exact_values(game, d), atol=1e-12)
    assert masks[5].tolist() == [True, False, True, False, False, False]  # bit j = word j, as all_coalitions


def test_full_budget_is_exact_with_no_error_and_the_cost_of_exact():
    d = 6
    game = polynomial_game(d)
    result = multifidelity_shapley(game, proxy_of(game, d), 1.0, proxy_cost=0.2, n_words=d)
    assert np.allclose(result.values, exact_values(game, d), atol=1e-12)
    assert result.exact and result.stopped == "exact"
    assert np.all(result.standard_errors == 0)
    assert result.cost.full_images == 2**d and result.cost.proxy_images == 0
    assert result.cost.fraction_of_exact == 1.0
    assert len(result.full_masks) == 2**d and result.full_payoffs.shape == (2**d, 1)


def test_efficiency_holds_exactly_whatever_the_sample():
    d = 7
    game = polynomial_game(d)
    result = multifidelity_shapley(game, proxy_of(game, d), 0.4, proxy_cost=0.2, n_words=d, seed=3)
    full, empty = game(np.ones((1, d))), game(np.zeros((1, d)))
    assert result.values.sum() == pytest.approx(float((full - empty)[0]), abs=1e-9)


@pytest.mark.parametrize("proxy_fraction, additive_control", [(1.0, True), (1.0, False), (0.5, True)])
def test_unbiased_over_sampler_seeds_and_cost_within_budget(proxy_fraction, additive_control):
    """Exact proxy (1.0) with and without the cross-fitted additive control, and sampled proxy (0.5: the full
    game on a subset of the proxy's pairs)."""
    d = 6
    game = polynomial_game(d)
    exact = exact_values(game, d)
    runs = [multifidelity_shapley(game, proxy_of(game, d), 0.5, proxy_cost=0.2, n_words=d, seed=s,
                                  proxy_fraction=proxy_fraction, additive_control=additive_control,
                                  proxy_weight=1.0) for s in range(300)]
    values = np.array([r.values for r in runs])
    assert not np.allclose(values[0], exact)  # it does sample
    standard_error_of_mean = values.std(0) / np.sqrt(len(runs))
    assert np.all(np.abs(values.mean(0) - exact) < 4 * standard_error_of_mean + 1e-12)
    assert all(r.cost.fraction_of_exact <= 0.5 for r in runs)
    if proxy_fraction == 1.0:
        assert runs[0].cost.proxy_images == 2**d - 2  # every coalition but the two ends (played in full)
    else:
        assert runs[0].cost.proxy_images < 2**d / 2 + 8


def test_intervals_cover_the_exact_values_about_95_percent():
    d = 8
    game = polynomial_game(d)
    exact = exact_values(game, d)
    covered = []
    for s in range(150):
        result = multifidelity_shapley(game, proxy_of(game, d), 0.5, proxy_cost=0.2, n_words=d, seed=s)
        assert np.allclose(result.intervals(), result.intervals(seeds=False))  # one seed: no seed error
        low, high = result.intervals(seeds=False).T
        covered.append((low <= exact) & (exact <= high))
    assert 0.90 <= np.mean(covered) <= 0.97


def test_seed_averaged_game_counts_between_seed_variance_with_its_known_size():
    """Payoff = closed form + independent noise per seed and coalition (sd 0.3): the expected values are the
    closed form's; exact per-seed values vary between seeds, and the stated intervals cover the expectation."""
    d, n_seeds, noise = 5, 6, 0.3
    base = polynomial_game(d)
    expected = exact_values(base, d)
    covered, seed_errors = [], []
    for rep in range(200):
        table = np.random.default_rng(rep).normal(scale=noise, size=(2**d, n_seeds))

        def game(masks):
            index = np.asarray(masks, dtype=np.int64) @ (1 << np.arange(d))
            return base(masks)[:, None] + table[index]
        result = multifidelity_shapley(game, None, 1.0, n_words=d)
        assert result.per_seed.shape == (d, n_seeds) and np.all(result.sampling_errors == 0)
        low, high = result.intervals().T
        covered.append((low <= expected) & (expected <= high))
        seed_errors.append(result.seed_errors)
    assert 0.90 <= np.mean(covered) <= 0.97
    # each per-seed value sums 2**(d-1) pair differences weighted 1/(d C(d-1, s)): its variance is known
    weights = shapley_weights(coalition_masks(np.arange(2**d), d))
    known = np.sqrt((weights**2).sum(0) * noise**2 / n_seeds)
    assert np.allclose(np.sqrt(np.mean(np.square(seed_errors), 0)), known, rtol=0.15)


def test_adaptive_stops_with_the_right_top_k_when_the_gap_is_clear():
    d = 8
    game = polynomial_game(d, top=(4.0, 3.0, 2.5))
    result = multifidelity_shapley(game, proxy_of(game, d), 0.9, proxy_cost=0.2, n_words=d, until_top_k=3, seed=0)
    assert result.stopped == "top-3 separated at 95%"
    assert set(np.argsort(-result.values)[:3]) == {0, 1, 2}
    assert result.cost.fraction_of_exact < 0.9  # it stopped before the budget was spent
    assert top_k_separated(result.values, result.sampling_errors, 3)


def test_adaptive_spends_the_budget_when_the_top_k_cannot_be_separated():
    d = 6
    rng = np.random.default_rng(0)
    noise = rng.normal(size=(3, 2 ** (d - 2)))

    def game(masks):  # words 0 and 1 are exchangeable (an exact tie for the top) in a rough game
        m = np.asarray(masks, dtype=np.int64)
        rough = noise[m[:, 0] + m[:, 1], m[:, 2:] @ (1 << np.arange(d - 2))]
        return m @ np.array([2.0, 2.0, 0.5, 0.2, 0.1, 0.0]) + rough
    exact = exact_values(game, d)
    assert exact[0] == pytest.approx(exact[1]) and exact[0] > exact[2:].max()
    result = multifidelity_shapley(game, None, 0.6, n_words=d, until_top_k=1, seed=0)
    assert result.stopped == "budget spent"
    assert 0.5 < result.cost.fraction_of_exact <= 0.6
    assert "'w0' and 'w1' cannot be told apart" in result.statement(["w0", "w1", "w2", "w3", "w4", "w5"], k=1)


def test_target_error_stops_when_reached():
    d = 7
    game = polynomial_game(d)
    result = multifidelity_shapley(game, proxy_of(game, d), 0.9, proxy_cost=0.2, n_words=d, target_error=0.05)
    assert result.stopped == "standard errors <= 0.05"
    assert result.sampling_errors.max() <= 0.05


def test_fitted_proxy_weight_recovers_the_scale():
    d = 7
    game = polynomial_game(d)
    result = multifidelity_shapley(game, lambda m: 0.5 * game(m), 0.5, proxy_cost=0.2, n_words=d,
                                   proxy_weight="fit")
    assert result.proxy_weight == pytest.approx(2.0)
    assert np.allclose(result.values, exact_values(game, d), atol=1e-9)  # a perfect control: no error left


def test_word_game_gives_its_words_and_is_called_in_batches():
    words = "a red circle on the left".split()
    f = lambda prompts: np.array([len(p) / 10 for p in prompts])  # noqa: E731
    full, proxy = WordGame(f, words), WordGame(lambda p: 0.9 * f(p), words)
    result = multifidelity_shapley(full, proxy, 0.6, proxy_cost=0.2, seed=0)
    assert result.values.shape == (6,)
    assert proxy.n_calls == 1 and full.n_calls == 2  # the two ends, then every sampled pair at once
    assert result.cost.full_images == full.n_evaluated


def test_stack_seeds_gives_a_payoff_column_per_seed():
    d = 4
    games = [polynomial_game(d, seed=s) for s in range(3)]
    result = multifidelity_shapley(stack_seeds(games), None, 1.0, n_words=d)
    assert np.allclose(result.values, np.mean([exact_values(g, d) for g in games], 0))
    assert result.cost.exact_images == 3 * 2**d


@pytest.mark.parametrize("budget", [0, -0.1, 1.5, float("nan"), "half"])
def test_budget_outside_0_1_is_named(budget):
    game = polynomial_game(4)
    with pytest.raises(ValueError, match="budget"):
        multifidelity_shapley(game, None, budget, n_words=4)


def test_bad_inputs_are_named():
    d = 6
    game = polynomial_game(d)
    with pytest.raises(ValueError, match="proxy_cost is required"):
        multifidelity_shapley(game, game, 0.5, n_words=d)
    with pytest.raises(ValueError, match="proxy_cost"):
        multifidelity_shapley(game, game, 0.5, proxy_cost=1.5, n_words=d)
    with pytest.raises(ValueError, match="n_words is required"):
        multifidelity_shapley(game, None, 0.5)
    with pytest.raises(ValueError, match=r"budget=0.25 is too small.*budget >= 0\.\d+"):
        multifidelity_shapley(game, game, 0.25, proxy_cost=0.2, n_words=d)
    with pytest.raises(ValueError, match=r"proxy must return payoffs of shape \(n,\) or \(n, n_seeds\)"):
        multifidelity_shapley(game, lambda m: np.zeros((len(m), 2, 2)), 0.5, proxy_cost=0.2, n_words=d)
    with pytest.raises(ValueError, match="proxy returned 2 seeds but full returned 1"):
        multifidelity_shapley(game, lambda m: np.zeros((len(m), 2)), 0.5, proxy_cost=0.2, n_words=d)
    with pytest.raises(ValueError, match="until_top_k=6 must be below"):
        multifidelity_shapley(game, None, 0.5, n_words=d, until_top_k=6)
    with pytest.raises(TypeError, match="full must be callable"):
        multifidelity_shapley("game", None, 0.5, n_words=d)
    with pytest.raises(ValueError, match="non-finite"):
        multifidelity_shapley(lambda m: np.full(len(m), np.nan), None, 0.5, n_words=d)


def test_certainty_sentences():
    labels = ["a", "red", "circle", "on", "the"]
    values = np.array([0.01, 0.30, 0.25, 0.05, 0.049])
    assert certainty_statement(values, np.zeros(5), labels, exact=True).startswith(
        "exact Shapley values for this seed")
    sure = certainty_statement(values, np.full(5, 0.005), labels, k=2, n_seeds=4)
    assert sure == "top-2 words ('red', 'circle') certain at 95% (4 seeds)"
    unsure = certainty_statement(values, np.full(5, 0.005), labels, k=3)
    assert unsure == "top-3 words not certain at 95% (1 seed): 'on' and 'the' cannot be told apart"
    assert np.allclose(intervals([1.0], [0.5]), [[1 - 0.98, 1 + 0.98]], atol=1e-3)
    assert intervals([1.0], [0.5], degrees_of_freedom=3)[0, 1] == pytest.approx(1 + 0.5 * 3.182, abs=1e-3)
    with pytest.raises(ValueError, match="labels has 2 entries"):
        certainty_statement(values, np.zeros(5), ["a", "b"])
