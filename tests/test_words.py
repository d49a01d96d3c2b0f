"""Words as players and the one place where f meets word masks (captum_diffusion.words)."""
import numpy as np
import pytest
import torch

from captum_diffusion.words import WordGame, as_mask_matrix, evaluate_masks, split_words, subprompt


class Recorder:
    """A cheap deterministic black box: score = number of characters; records every call."""

    def __init__(self):
        self.calls: list[list[str]] = []

    def __call__(self, prompts):
        self.calls.append(list(prompts))
        return np.array([len(p) for p in prompts], dtype=float)


def test_split_words_follows_the_paper():
    assert split_words("a cat's house") == ["a", "cat's", "house"]
    assert split_words("  a\tred  circle\n") == ["a", "red", "circle"]
    with pytest.raises(ValueError, match="empty"):
        split_words("   ")
    with pytest.raises(TypeError, match="prompt must be a str"):
        split_words(["a", "b"])


def test_subprompt_keeps_order_and_empty_coalition_is_empty_prompt():
    words = ["a", "red", "circle"]
    assert subprompt(words, [1, 0, 1]) == "a circle"
    assert subprompt(words, [0, 0, 0]) == ""
    with pytest.raises(ValueError, match="3 words"):
        subprompt(words, [1, 0])


def test_evaluate_masks_deduplicates_within_a_call():
    f = Recorder()
    masks = np.array([[1, 1, 1], [0, 1, 0], [1, 1, 1], [0, 0, 0], [0, 1, 0]])
    values = evaluate_masks(f, ["a", "red", "circle"], masks)
    assert values.tolist() == [12.0, 3.0, 12.0, 0.0, 3.0]
    assert f.calls == [["a red circle", "red", ""]]  # one call, each distinct sub-prompt once, in first-seen order


def test_repeated_words_are_separate_players():
    f = Recorder()
    values = evaluate_masks(f, split_words("a dog and a cat"), [[0, 1, 1, 1, 1], [1, 1, 1, 0, 1]])
    assert f.calls == [["dog and a cat", "a dog and cat"]]
    assert values.tolist() == [13.0, 13.0]


def test_word_game_memoises_across_calls_and_accepts_torch_masks():
    f = Recorder()
    game = WordGame(f, "a red circle")
    game(np.array([[1, 0, 0], [1, 1, 1]]))
    out = game(torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]))
    assert out.tolist() == [1.0, 6.0]
    assert f.calls == [["a", "a red circle"], ["circle"]]
    assert (game.n_calls, game.n_evaluated) == (2, 3)


def test_all_coalitions_is_every_subset_once_including_empty():
    f = Recorder()
    game = WordGame(f, "a red big circle")
    masks, values = game.all_coalitions()
    assert masks.shape == (16, 4) and len({m.tobytes() for m in masks}) == 16
    assert len(f.calls) == 1 and sorted(f.calls[0]) == sorted(set(f.calls[0])) and "" in f.calls[0]
    for m, v in zip(masks, values):
        assert v == len(subprompt(game.words, m))


@pytest.mark.parametrize(
    "masks, error, match",
    [
        (np.ones((2, 4)), ValueError, r"shape \(n, 3\)"),
        (np.array([[1, 0.5, 0]]), ValueError, "only 0 and 1"),
        (np.array([["a", "b", "c"]]), TypeError, "numeric"),
    ],
)
def test_bad_masks(masks, error, match):
    with pytest.raises(error, match=match):
        as_mask_matrix(masks, 3)


def test_bad_outputs_name_the_sub_prompt():
    def nan_for_red(prompts):
        return np.array([np.nan if "red" in p else 1.0 for p in prompts])

    with pytest.raises(ValueError, match=r"non-finite score.*'a red' -> nan"):
        evaluate_masks(nan_for_red, ["a", "red"], [[1, 0], [1, 1]])
    with pytest.raises(ValueError, match=r"shape \(n,\) = \(2,\).*\(2, 3\)"):
        evaluate_masks(lambda ps: np.zeros((len(ps), 3)), ["a", "red"], [[1, 0], [1, 1]])
    with pytest.raises(ValueError, match=r"shape \(n,\) = \(1,\)"):
        evaluate_masks(lambda ps: np.zeros(5), ["a", "red"], [[1, 1]])
    # a column vector (n, 1) is accepted
    assert evaluate_masks(lambda ps: np.ones((len(ps), 1)), ["a"], [[1], [0]]).tolist() == [1.0, 1.0]


def test_a_failed_call_does_not_poison_the_memo():
    game = WordGame(lambda ps: np.full(len(ps), np.nan), "a red")
    with pytest.raises(ValueError):
        game([[1, 1]])
    assert game.memo == {}


def test_bad_game_arguments():
    with pytest.raises(TypeError, match="f must be callable"):
        WordGame("not a function", "a red")
    with pytest.raises(ValueError, match="empty"):
        WordGame(len, "")
    with pytest.raises(ValueError, match="without whitespace"):
        WordGame(len, ["a b", "c"])
