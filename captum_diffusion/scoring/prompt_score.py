"""``PromptScore``: the black box ``f(sub_prompts) -> scores (n,)`` that shap, lime and captum explain."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from captum_diffusion import checks
from captum_diffusion.protocols import CachedGenerator
from captum_diffusion.scoring.base import batches
from captum_diffusion.words.game import split_words


class PromptScore:
    """The black box ``f(prompts) -> np.ndarray (n,)`` that shap, lime and captum explain.

    ``f(sub_prompts)[i]`` generates ``sub_prompts[i]`` with ``generator`` (same seed and settings as the full
    prompt, cached) and scores it with ``scorer`` against the reference:

    - ``reference="image"`` (default, the Gupta & Kanoria payoff): the image of the full ``prompt``;
      ``scorer.image_similarity(images, reference_image)`` (``CLIPSimilarity``, ``LatentSimilarity``) or a plain
      callable ``scorer(images, reference_image) -> (n,)``.
    - ``reference="text"``: the text of ``prompt``; ``scorer.text_similarity(images, [prompt])``.

    ``prompt`` is kept as its words joined by single spaces (``.prompt``), which is exactly the full coalition's
    sub-prompt, so ``f(prompt)`` scores the reference image against itself. An explainer given this ``f`` with a
    prompt of other words (``explain_prompt("a blue square", f)``) raises ``ValueError``: that would be another game.

    A score that is NaN or inf raises ``ValueError`` naming the sub-prompt(s), so no explainer averages a NaN silently.
    Scores are remembered per sub-prompt (images are cached by the generator), so shap, lime and captum
    explaining the same ``PromptScore`` play exactly the same game. New sub-prompts are generated and scored
    ``chunk_size`` at a time, so at most that many images are held at once.
    """

    def __init__(self, generator, scorer, prompt: str, *, reference: str = "image", chunk_size: int = 256):
        if not isinstance(generator, CachedGenerator):
            raise TypeError(f"generator must be a captum_diffusion.TextToImage (a protocols.CachedGenerator: fixed, "
                            "keyed images; wrap a pipeline or callable in TextToImage), got "
                            f"{type(generator).__name__}")
        words = split_words(prompt)  # raises on an empty / whitespace-only / non-str prompt
        checks.one_of(reference, ("image", "text"), "reference")
        method = "image_similarity" if reference == "image" else "text_similarity"
        if not hasattr(scorer, method) and not (reference == "image" and callable(scorer)):
            raise TypeError(
                f"scorer must have a .{method}(images, ...) method (CLIPSimilarity"
                f"{', LatentSimilarity' if reference == 'image' else ''})"
                f"{' or be a callable (images, reference_image) -> (n,)' if reference == 'image' else ''}; "
                f"got {type(scorer).__name__}"
            )
        # the game's full coalition is the words joined by single spaces: the reference must be that sub-prompt
        self.generator, self.scorer, self.prompt, self.reference = generator, scorer, " ".join(words), reference
        self.chunk_size = checks.positive_int(chunk_size, "chunk_size")
        self._scores: dict[str, float] = {}

    @property
    def scores(self) -> dict[str, float]:
        """Every sub-prompt scored so far and its score (a copy), in the order they were first scored."""
        return dict(self._scores)

    @property
    def reference_image(self):
        """The full prompt's image at the generator's seed and settings (cached after the first call)."""
        return self.generator([self.prompt])[0]

    def __call__(self, prompts: Sequence[str]) -> np.ndarray:
        """Scores of ``prompts`` (sub-prompts; ``""`` is the empty coalition): float64 array ``(n,)``.

        Each sub-prompt's score is computed once and remembered, so ``f`` is a function of the sub-prompt alone
        (a batched scorer may otherwise round the last bits differently with the batch it is in)."""
        prompts = checks.string_list(prompts, "prompts", allow_single=False)
        new = [p for p in dict.fromkeys(prompts) if p not in self._scores]
        for chunk in batches(new, self.chunk_size):  # bounded memory: images of one chunk at a time
            values = self._score(chunk)
            bad = [p for p, v in zip(chunk, values) if not np.isfinite(v)]
            if bad:
                raise ValueError(f"scorer returned NaN or inf for sub-prompt(s) {bad[:5]}"
                                 f"{' ...' if len(bad) > 5 else ''}")
            self._scores.update(zip(chunk, values.tolist()))
        return np.array([self._scores[p] for p in prompts], dtype=np.float64)

    def _score(self, prompts: list[str]) -> np.ndarray:
        images = self.generator(prompts)
        if self.reference == "image":
            score = getattr(self.scorer, "image_similarity", self.scorer)
            values = np.asarray(score(images, self.reference_image), dtype=np.float64)
        else:
            values = np.asarray(self.scorer.text_similarity(images, [self.prompt]), dtype=np.float64)
            values = values[:, 0] if values.ndim == 2 else values
        if values.shape != (len(images),):
            raise ValueError(f"scorer returned shape {values.shape} for {len(images)} images; expected ({len(images)},)")
        return values

    def __repr__(self) -> str:
        return f"PromptScore({self.prompt!r}, reference={self.reference!r}, scorer={type(self.scorer).__name__})"
