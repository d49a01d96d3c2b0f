"""Gupta & Kanoria's metrics, the shipped dataset, and the Shapley axiom checks."""
import numpy as np
import pytest
import torch

from captum_diffusion.words.attribution import WordAttribution
from captum_diffusion.datasets import load_gupta_kanoria
from captum_diffusion.metrics import (
    check_efficiency,
    check_null_player,
    check_symmetry,
    normalize_scores,
    percent_ranks_aligned,
    rmse,
)
from captum_diffusion.metrics.ranking import ranks
from captum_diffusion.words import WordGame, split_words

CAT_TRUTH, CAT_SHAPLEY = [0.05, 0.45, 0.5], [0.13, 0.59, 0.28]


def test_paper_worked_example_a_cats_house():
    assert ranks(CAT_TRUTH).tolist() == [3, 2, 1] and ranks(CAT_SHAPLEY).tolist() == [3, 1, 2]
    assert percent_ranks_aligned(CAT_SHAPLEY, CAT_TRUTH) == pytest.approx(1 / 3)  # 33.33%
    assert rmse(CAT_SHAPLEY, CAT_TRUTH, reduction="sum") == pytest.approx(0.2728, abs=5e-5)  # as printed
    assert rmse(CAT_SHAPLEY, CAT_TRUTH) == pytest.approx(np.sqrt(0.0744 / 3))  # the paper's equation (mean)


def test_paper_examples_from_the_dataset_match_the_reported_rmse():
    data = load_gupta_kanoria()
    checked = 0
    for record in data:
        example = data.reported_examples.get(record.prompt)
        if example:
            assert rmse(example["shapley"], record.ground_truth, reduction="sum") == pytest.approx(record.reported_rmse, abs=0.005)
            checked += 1
    assert checked == 3  # books and coffee (0.04, all ranks aligned), a cat's house (0.27), astronauts at parties (0.43)
    books = next(r for r in data if r.prompt == "books and coffee")
    assert percent_ranks_aligned(data.reported_examples["books and coffee"]["shapley"], books.ground_truth) == 1.0


def test_normalisation_and_scale_invariance():
    np.testing.assert_allclose(normalize_scores([1, 3, 4]), [0.125, 0.375, 0.5])
    assert rmse([2, 6, 8], [0.125, 0.375, 0.5]) == pytest.approx(0.0)
    assert rmse(torch.tensor([0.13, 0.59, 0.28]), CAT_TRUTH, reduction="sum") == pytest.approx(0.27276, abs=1e-5)
    with pytest.raises(ValueError, match="sum to"):
        normalize_scores([1.0, -1.0])
    assert rmse([0.2, 0.8], [0.4, 0.6], normalize=False) == pytest.approx(0.2)


def test_ties_share_the_best_rank():
    assert ranks([0.4, 0.4, 0.2]).tolist() == [1, 1, 3]
    assert percent_ranks_aligned([0.4, 0.4, 0.2], [0.5, 0.3, 0.2]) == pytest.approx(2 / 3)


def test_metric_bad_inputs():
    with pytest.raises(ValueError, match="ground_truth has 2"):
        rmse([0.5, 0.3, 0.2], [0.5, 0.5])
    with pytest.raises(ValueError, match="NaN"):
        percent_ranks_aligned([np.nan, 1.0], [0.5, 0.5])
    with pytest.raises(ValueError, match="reduction"):
        rmse(CAT_SHAPLEY, CAT_TRUTH, reduction="max")
    with pytest.raises(ValueError, match="shape"):
        rmse([], [])
    with pytest.raises(TypeError, match="numbers"):
        normalize_scores(["a", "b"])


def test_dataset_ships_and_is_consistent():
    data = load_gupta_kanoria()
    assert len(data) == 10 and data[0].prompt == "a flower lamp"
    assert data.reported_percent_ranks_aligned == 0.64 and data.reported_mean_rmse == 0.2161
    for record in data:
        assert list(record.words) == split_words(record.prompt)
        assert record.ground_truth.shape == (len(record.words),) and record.ground_truth.sum() == pytest.approx(1.0)
        assert record.reported_shapley_ranks.shape == (len(record.words),)
    # the reported per-prompt RMSEs (rounded to 2 decimals) average to the reported 0.2161
    assert np.mean([r.reported_rmse for r in data]) == pytest.approx(0.2161, abs=0.002)
    # the printed rank table gives 55% aligned per prompt (not the 64% the text states)
    aligned = [percent_ranks_aligned(-r.reported_shapley_ranks, r.ground_truth) for r in data]
    assert np.mean(aligned) == pytest.approx(0.55)


# ---- Shapley axioms -----------------------------------------------------------------------------------

def game_f(prompts):
    """'big' and 'small' are symmetric, 'the' is a null player, red & circle interact."""
    weights = {"big": 0.4, "small": 0.4, "red": 0.6, "circle": 1.0, "the": 0.0}
    out = []
    for p in prompts:
        w = p.split()
        out.append(0.1 + sum(weights[x] for x in w) + 0.5 * ("red" in w and "circle" in w))
    return np.array(out)


PROMPT = "the big small red circle"
EXACT = np.array([0.0, 0.4, 0.4, 0.85, 1.25])


def test_efficiency_check_measures_the_gap():
    result = check_efficiency(EXACT, game_f, PROMPT)
    assert result.passed and result.gap == pytest.approx(0.0, abs=1e-12) and bool(result)
    ablation = WordAttribution(game_f, "feature_ablation").attribute(PROMPT)
    failed = check_efficiency(ablation, game_f, PROMPT)
    assert not failed.passed and failed.gap == pytest.approx(0.5)  # the interaction is counted twice
    assert check_efficiency(EXACT, full_value=3.0, base_value=0.1).passed


def test_symmetry_and_null_player_checks():
    symmetric = check_symmetry(EXACT, game_f, PROMPT)
    assert symmetric.players == ((1, 2),) and symmetric.passed
    skewed = check_symmetry(EXACT + [0, 0.1, 0, 0, 0], game_f, PROMPT)
    assert not skewed.passed and skewed.gap == pytest.approx(0.1)
    null = check_null_player(EXACT, game_f, PROMPT)
    assert null.players == (0,) and null.passed
    assert not check_null_player(EXACT + 0.01, game_f, PROMPT, atol=1e-3).passed
    with pytest.raises(ValueError, match="not symmetric"):
        check_symmetry(EXACT, game_f, PROMPT, pairs=[(3, 4)])


def test_axiom_checks_reuse_a_game_and_accept_captum_output():
    calls = []

    def counting(prompts):
        calls.append(len(prompts))
        return game_f(prompts)

    game = WordGame(counting, PROMPT)
    phi = WordAttribution(game_f, "shapley_values").attribute(PROMPT)
    assert check_symmetry(phi, game, atol=1e-5).passed
    assert check_null_player(phi, game, atol=1e-5).passed
    assert check_efficiency(phi, game, atol=1e-5).passed
    assert sum(calls) == 32  # all coalitions once, shared by the three checks
    assert check_efficiency(phi, atol=1e-5).passed  # v(all) and v(none) from the result itself
    assert check_efficiency(phi.seq_attr, game, atol=1e-5).passed
    assert rmse(phi, EXACT, normalize=False) < 1e-5  # the ranking metrics take the result too (np.asarray)
    other = WordAttribution(game_f, "feature_ablation", progress=False).attribute("the big red small circle")
    with pytest.raises(ValueError, match=r"attributions are for the words .*'red', 'small'"):
        check_symmetry(other, game)
    with pytest.raises(ValueError, match="5 words"):
        check_efficiency([0.1, 0.2], game_f, PROMPT)
    with pytest.raises(ValueError, match="prompt is required"):
        check_null_player(EXACT, game_f)
