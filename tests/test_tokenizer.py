"""The shipped CLIP BPE tokenizer behaves as real CLIP's does on the words that matter."""
from captum_diffusion.testing import tiny_tokenizer
from scripts.build_tokenizer import WORDS, build


def tokens(text):
    tok = tiny_tokenizer()
    return tok.convert_ids_to_tokens(tok(text).input_ids)


def test_every_listed_word_is_one_token():
    tok = tiny_tokenizer()
    for word in WORDS:
        assert tok(word).input_ids[1:-1] == [tok.convert_tokens_to_ids(word + "</w>")], word


def test_prompt_is_wrapped_in_start_and_end_tokens_and_lowercased():
    assert tokens("a Red circle") == ["<|startoftext|>", "a</w>", "red</w>", "circle</w>", "<|endoftext|>"]


def test_unknown_words_fall_apart_into_subword_pieces():
    pieces = tokens("hotdog")[1:-1]
    assert len(pieces) > 1 and "".join(pieces).replace("</w>", "") == "hotdog"
    assert "dog</w>" in pieces  # a sub-word piece, which word matching must not mistake for the word "dog"


def test_files_on_disk_are_what_the_builder_makes(tmp_path):
    import json

    from captum_diffusion.testing import TOKENIZER_DIR

    vocab, merges = build(WORDS)
    assert json.loads((TOKENIZER_DIR / "vocab.json").read_text()) == vocab
    assert (TOKENIZER_DIR / "merges.txt").read_text().splitlines()[1:] == [f"{a} {b}" for a, b in merges]

