"""Prompt words -> text-encoder token positions (for attention maps such as DAAM's).

A *word* is a whitespace-separated word of the prompt (:func:`captum_diffusion.words.split_words`); its
positions are all the tokens it became. Two tokenizer kinds are covered, and any other transformers tokenizer
whose word-by-word tokens concatenate to the prompt's tokens:

- CLIP BPE (SD 1.x/2.x/XL, SD3's first 77 text positions): lowercases, splits punctuation off and cuts rare
  words into several sub-tokens. Position 0 is ``<|startoftext|>``, so the first word starts at position 1;
  77 positions in all (start, 75 content tokens, end).
- T5 sentencepiece (SD3's T5 positions, FLUX.1, PixArt-Σ): every word's first piece carries the ``▁``
  word-start mark (``"hotdog"`` -> ``▁hot``, ``dog``; ``"Dog,"`` -> ``▁Dog``, ``,``); no start token, so the
  first word starts at position 0; the end token ``</s>`` follows the last piece. Its limit is the pipeline's
  ``max_sequence_length`` (give it as ``max_length``), not the tokenizer's ``model_max_length``.

Tokens past the limit are truncated by the pipelines and so have no position here.

Addressing words (the ``words`` argument of :func:`resolve_words` and ``DAAM.attribute``):

- ``"dog"``: every occurrence of the whole word ``dog``. Matching ignores case and punctuation at the word's
  ends (``"dog"`` matches ``"Dog,"``) but never matches inside another word (not in ``"hotdog"``).
  Several occurrences are merged into one map, labelled ``"dog"``.
- ``"red#1"`` or ``("red", 1)``: only the second occurrence of ``red`` (occurrences count from 0).
- ``3`` (an ``int``): the word at index 3 of ``split_words(prompt)``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence, Union

from captum_diffusion.words.game import split_words, word_key, word_labels

WordSpec = Union[str, int, tuple]
_OCCURRENCE = re.compile(r"^(.+)#(\d+)$")


@dataclass(frozen=True)
class WordTokens:
    """One addressed word: its ``label``, the indices of the prompt words it covers (in ``split_words``
    order) and their token positions in the encoded prompt (``0`` is the start token)."""

    label: str
    word_indices: tuple[int, ...]
    positions: tuple[int, ...]


def word_token_positions(prompt: str, tokenizer, *, max_length: Optional[int] = None,
                         offset: int = 0) -> list[tuple[str, tuple[int, ...]]]:
    """``(word, positions)`` for every word of ``split_words(prompt)``, in order.

    Parameters
    ----------
    prompt : str
        The prompt.
    tokenizer : transformers.PreTrainedTokenizerBase
        The text encoder's tokenizer (CLIP or T5).
    max_length : int, optional
        The sequence length the pipeline pads and truncates to (default ``tokenizer.model_max_length``); a word
        cut off by truncation keeps only its surviving positions (possibly none).
    offset : int
        Where this encoder's tokens start in a longer text sequence, e.g. 77 for SD3's T5 part.

    Returns
    -------
    list of (str, tuple of int)
        ``positions`` are the word's token indices in ``tokenizer(prompt)`` with special tokens (CLIP: start
        token at 0, first word at 1; T5: first word at 0), plus ``offset``.

    Raises
    ------
    ValueError
        For an empty prompt, or if word-by-word tokenization disagrees with the prompt's.
    """
    words = split_words(prompt)
    _check_tokenizer(tokenizer)
    max_length = int(tokenizer.model_max_length) if max_length is None else max_length
    pieces = [tokenizer(word, add_special_tokens=False)["input_ids"] for word in words]
    full = tokenizer(prompt, add_special_tokens=False, verbose=False)["input_ids"]
    if [t for piece in pieces for t in piece] != list(full):
        raise ValueError(f"prompt {prompt!r}: tokenizing it word by word does not reproduce its tokens: it holds a "
                         f"character that str.split and the tokenizer ({type(tokenizer).__name__}) read differently (a "
                         f"control character such as '\\x1f'), or the tokenizer merges tokens across whitespace")
    leading, trailing = _special_tokens_around(tokenizer, words[0], pieces[0])
    last = max_length - trailing - 1  # the last content position: the end token survives truncation
    out, position = [], leading
    for word, piece in zip(words, pieces):
        out.append((word, tuple(offset + p for p in range(position, position + len(piece)) if p <= last)))
        position += len(piece)
    return out


def _special_tokens_around(tokenizer, text: str, content: list[int]) -> tuple[int, int]:
    """How many special tokens the tokenizer puts before and after ``text``'s tokens ``content`` (CLIP: 1, 1;
    T5: 0, 1)."""
    with_special = list(tokenizer(text)["input_ids"])
    for start in range(len(with_special) - len(content) + 1):
        if with_special[start:start + len(content)] == list(content):
            return start, len(with_special) - start - len(content)
    raise ValueError(f"{type(tokenizer).__name__}: a text's tokens do not appear in its tokens with special tokens")


def _check_tokenizer(tokenizer) -> None:
    if not callable(tokenizer) or not isinstance(getattr(tokenizer, "model_max_length", None), int):
        raise TypeError(f"tokenizer must be a transformers tokenizer (CLIP BPE or T5 sentencepiece: callable, with "
                        f"model_max_length), got {type(tokenizer).__name__}")


def _parse(spec: WordSpec, words: list[str]) -> tuple[str, Union[int, None], str]:
    """``(key, occurrence or None, label)`` of a word spec; an ``int`` becomes its word's key/occurrence."""
    if isinstance(spec, bool) or not isinstance(spec, (str, int, tuple)):
        raise TypeError(f"words: each word must be a str like 'dog' or 'red#1', an int index or a (word, occurrence) "
                        f"tuple; got {type(spec).__name__} {spec!r}")
    if isinstance(spec, int):
        if not -len(words) <= spec < len(words):
            raise ValueError(f"words: word index {spec} is out of range for the prompt's {len(words)} words {words}")
        index = spec % len(words)
        key = word_key(words[index])
        occurrence = [word_key(w) for w in words[:index]].count(key)
        return key, occurrence, word_labels(words)[index]
    if isinstance(spec, tuple):
        if len(spec) != 2 or not isinstance(spec[0], str) or isinstance(spec[1], bool) or not isinstance(spec[1], int):
            raise TypeError(f"words: a tuple word must be (word: str, occurrence: int), got {spec!r}")
        return word_key(spec[0]), spec[1], f"{spec[0]}#{spec[1]}"
    keys = {word_key(w) for w in words}
    match = _OCCURRENCE.match(spec)
    if match and word_key(spec) not in keys:
        return word_key(match.group(1)), int(match.group(2)), spec
    return word_key(spec), None, spec


def resolve_words(prompt: str, tokenizer, words: Union[None, Sequence[WordSpec]] = None, *,
                  max_length: Optional[int] = None) -> list[WordTokens]:
    """The token positions of the addressed ``words`` of ``prompt`` (see the module docstring for specs).

    ``words=None`` gives every word of the prompt in order, repeated ones labelled ``word#k``; words lost
    to truncation are left out. ``max_length``: as in :func:`word_token_positions`. Raises ``ValueError`` for
    an empty prompt, a word not in the prompt (the message lists the prompt's words), an occurrence that does
    not exist, or a word lost to truncation.
    """
    limit = int(tokenizer.model_max_length) if max_length is None and _has_limit(tokenizer) else max_length
    return select_words(prompt, word_token_positions(prompt, tokenizer, max_length=max_length), words,
                        limit_note=f"the tokenizer's {limit}-token limit")


def merge_positions(*aligned: list[tuple[str, tuple[int, ...]]]) -> list[tuple[str, tuple[int, ...]]]:
    """Several :func:`word_token_positions` results of one prompt (one per text encoder, each with its
    ``offset``) as one: each word's positions in all of them, in order."""
    return [(group[0][0], tuple(p for _, positions in group for p in positions)) for group in zip(*aligned)]


def select_words(prompt: str, aligned: list[tuple[str, tuple[int, ...]]],
                 words: Union[None, Sequence[WordSpec]] = None, *,
                 limit_note: str = "the token limit") -> list[WordTokens]:
    """:func:`resolve_words` on already aligned words (``aligned`` from :func:`word_token_positions` or
    :func:`merge_positions`); ``limit_note`` names the limit in the truncation error."""
    prompt_words = [w for w, _ in aligned]
    if words is None:
        return [WordTokens(_parse(i, prompt_words)[2], (i,), pos) for i, (_, pos) in enumerate(aligned) if pos]
    if isinstance(words, (str, int)) or (isinstance(words, tuple) and _looks_like_spec_tuple(words)):
        words = [words]
    if isinstance(words, (bytes, bytearray)) or not isinstance(words, Iterable):
        raise TypeError(f"words must be None, a word spec (str, int index, (word, occurrence)) or a sequence of "
                        f"them; got {type(words).__name__} {words!r}")
    words = list(words)
    if not words:
        raise ValueError("words is empty; give None (all words) or at least one word of the prompt")
    out = []
    for spec in words:
        key, occurrence, label = _parse(spec, prompt_words)
        indices = [i for i, w in enumerate(prompt_words) if word_key(w) == key]
        if not indices:
            raise ValueError(f"words: {spec!r} is not a word of the prompt {prompt!r}; its words are {prompt_words}")
        if occurrence is not None:
            if not 0 <= occurrence < len(indices):
                raise ValueError(f"words: {spec!r}: the prompt {prompt!r} has {len(indices)} occurrence(s) of "
                                 f"{key!r}, numbered 0..{len(indices) - 1}")
            indices = [indices[occurrence]]
        positions = tuple(p for i in indices for p in aligned[i][1])
        if not positions:
            raise ValueError(f"words: {spec!r} lies past {limit_note} and is truncated away by the pipeline")
        out.append(WordTokens(label, tuple(indices), positions))
    return out


def _has_limit(tokenizer) -> bool:
    return isinstance(getattr(tokenizer, "model_max_length", None), int)


def _looks_like_spec_tuple(value: tuple) -> bool:
    """``("red", 1)`` is one word spec, not a sequence of two words."""
    return len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], int) and not isinstance(value[1], bool)
