"""Build the project's small CLIP BPE tokenizer (vocab.json + merges.txt) from a word list.

The files follow OpenAI CLIP's format exactly (byte-level alphabet, ``</w>`` word ends, ranked merges,
``<|startoftext|>`` / ``<|endoftext|>``), so ``transformers.CLIPTokenizer`` loads them and tokenizes with
real BPE: every listed word is one token, any other word falls apart into sub-word pieces, as with real CLIP.

    python scripts/build_tokenizer.py            # writes captum_diffusion/shapes_world/tokenizer/  (< 1 s)
"""
from __future__ import annotations

import json
from pathlib import Path

SHAPES_WORLD_WORDS = """a on the and red green blue yellow circle square triangle left right top bottom""".split()
# Common English words, so prompts outside ShapesWorld (the paper's dataset included) tokenize realistically.
ENGLISH_WORDS = """
an of in at to with without by for from over under near behind above below next is are
photo picture painting drawing image of cat cats dog dogs hot house houses car tree trees flower flowers lamp
hat wearing spanish flag books book coffee girls girl boys boy watching movies movie map land ancient egyptian
astronauts astronaut parties party man woman people city street sky sea water mountain beach forest
black white orange purple pink brown gray grey big small large tiny old new bright dark shape shapes object
one two three
""".split()
WORDS = list(dict.fromkeys(SHAPES_WORLD_WORDS + ENGLISH_WORDS))


def bytes_to_unicode() -> dict[int, str]:
    """CLIP's reversible map from the 256 byte values to printable unicode characters."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars)))


def apply_bpe(symbols: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    """Merge adjacent symbols greedily by rank, as CLIP's BPE does."""
    while len(symbols) > 1:
        pairs = [(ranks.get(pair, float("inf")), i) for i, pair in enumerate(zip(symbols, symbols[1:]))]
        rank, i = min(pairs)
        if rank == float("inf"):
            break
        symbols = symbols[:i] + [symbols[i] + symbols[i + 1]] + symbols[i + 2:]
    return symbols


def build(words: list[str]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Ranked merges that make every word of ``words`` a single ``word</w>`` token, and the vocabulary."""
    byte_chars = list(bytes_to_unicode().values())
    ranks: dict[tuple[str, str], int] = {}
    for word in words:
        symbols = list(word[:-1]) + [word[-1] + "</w>"]
        while len(symbols := apply_bpe(symbols, ranks)) > 1:
            ranks[(symbols[0], symbols[1])] = len(ranks)  # merge the leftmost unmerged pair next
    merges = sorted(ranks, key=ranks.get)
    vocab_tokens = byte_chars + [c + "</w>" for c in byte_chars] + ["".join(m) for m in merges]
    vocab_tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {token: i for i, token in enumerate(dict.fromkeys(vocab_tokens))}, merges


def main(out: Path = Path(__file__).resolve().parents[1] / "captum_diffusion" / "shapes_world" / "tokenizer") -> None:
    vocab, merges = build(WORDS)
    out.mkdir(parents=True, exist_ok=True)
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (out / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    print(f"{len(vocab)} tokens, {len(merges)} merges -> {out}")


if __name__ == "__main__":
    main()
