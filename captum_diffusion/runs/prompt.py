"""One prompt of a run, explained at every seed: word attributions by every method, the scored sub-prompts,
attention maps and the segment-by-word table (:func:`explain_prompt`). ``runs.execute`` calls it for each prompt
of a wave, after the wave's images are in the cache.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from captum_diffusion.runs.config import PromptSpec, RunConfig
from captum_diffusion.runs.methods import PayoffAt, word_estimate
from captum_diffusion.runs.store import PromptRun, SubPrompt
from captum_diffusion.words import split_words, word_labels


def subprompt_mask(words: list[str], subprompt: str) -> str:
    """The mask ("1011") of a sub-prompt of ``words``: its words matched to the prompt's, leftmost first."""
    kept, position = ["0"] * len(words), 0
    for word in subprompt.split():
        while words[position] != word:
            position += 1
        kept[position] = "1"
        position += 1
    return "".join(kept)


def explain_prompt(spec: PromptSpec, config: RunConfig, model, cache_dir: Path, counts: dict, *,
                   progress: bool = True, costs: dict | None = None) -> PromptRun:
    """One prompt at every seed: word attributions by every method, the scored sub-prompts, attention maps and
    segments as configured.

    Parameters
    ----------
    spec : PromptSpec
        The prompt.
    config : RunConfig
        The run.
    model : LoadedModel
        Pipeline and scorer (``runs.models.load_model``).
    cache_dir : Path
        The run's image cache.
    counts : dict
        The manifest's counts: ``images_generated`` / ``images_from_cache`` are increased here.
    progress : bool
        Progress bars.
    costs : dict, optional
        Filled with ``{method: its images over the seeds}`` where the method counts them (``runs.cost``).

    Returns
    -------
    PromptRun
        ``values[method]`` and ``base_values[method]`` float64 ``(n_seeds, d)`` / ``(n_seeds,)``, ``payoffs``
        ``(n_seeds,)``, images, scored sub-prompts, attention maps ``(n_seeds, n_words, H, W)``, segments, and
        ``standard_errors[method]`` where the method states them.
    """
    words = split_words(spec.prompt)
    methods = config.methods_for(len(words))
    result = PromptRun(spec.prompt, words, word_labels(words), list(config.seeds_for(spec)),
                       payoff=f"cosine similarity ({type(model.scorer).__name__}) between each sub-prompt's image and "
                              "the full prompt's image, same seed and settings")
    estimates = {m: [] for m in methods}
    payoffs, maps, segments, tables = [], [], [], []
    for seed in result.seeds:
        games = _Games(spec.prompt, config, model, cache_dir, seed, progress)
        generator, f = games.generator, games.f
        image = generator([f.prompt])[0]  # first: a prompt over a token limit is refused naming it, not a sub-prompt
        for method in methods:
            estimates[method].append(word_estimate(method, f, config, seed, PayoffAt(games.at, games.settings)))
        payoffs.append(float(f([f.prompt])[0]))
        result.images.append(image)
        scored = sorted(f.scores.items(), key=lambda item: subprompt_mask(words, item[0]))
        pictures = generator([p for p, _ in scored])  # one call: the generator's identity is derived once
        result.subprompts.append([SubPrompt(subprompt_mask(words, p), p, v, picture)
                                  for (p, v), picture in zip(scored, pictures)])
        if _wants_attention(config, model):
            result.attention_labels, seed_maps = attention_maps(model.pipeline, generator, spec)
            maps.append(seed_maps)
        if config.segments is not None:
            seed_segments, table, result.table_words = segment_table(config.segments, image, spec, model.scorer,
                                                                     maps[-1] if maps else None)
            segments.append(seed_segments)
            tables.append(table)
        games.count(counts)
    _add_estimates(result, estimates, costs)
    result.payoffs = np.array(payoffs, dtype=np.float64)
    result.attention = np.stack(maps).astype(np.float32) if maps else None
    if config.segments is not None:
        result.segments, result.segment_tables = segments, tables
    return result


def _add_estimates(result: PromptRun, estimates: dict, costs: dict | None) -> None:
    """Set ``result``'s values and base values from each method's per-seed estimates, its standard errors where
    the method states them, and its cost in ``costs`` where it counts it."""
    from captum_diffusion.runs.multifidelity import combine_seeds, seeds_cost

    result.values = {m: np.array([e.values for e in found], dtype=np.float64) for m, found in estimates.items()}
    result.base_values = {m: np.array([e.base for e in found], dtype=np.float64) for m, found in estimates.items()}
    for method, found in estimates.items():
        if found and all(e.standard_errors is not None for e in found):
            errors, df, source = combine_seeds(found)
            result.set_standard_errors(method, errors, df, source)
        if costs is not None and found and all(e.cost is not None for e in found):
            costs[method] = seeds_cost(found)


class _Games:
    """The payoffs of one prompt at one seed: ``f`` at the run's generation settings, and :meth:`at` other settings
    (a method's ``payoff_at``), each over its own cached ``TextToImage``."""

    def __init__(self, prompt: str, config: RunConfig, model, cache_dir: Path, seed: int, progress: bool):
        self.prompt, self.config, self.model, self.cache_dir = prompt, config, model, cache_dir
        self.seed, self.progress = seed, progress
        self.settings = model.generation_settings(config)
        self.generators = []
        self.generator = self._generator(self.settings)
        self.f = self._payoff(self.generator)
        self._others = {}

    def _generator(self, settings):
        from captum_diffusion.generation import TextToImage

        generator = TextToImage(self.model.pipeline, seed=self.seed, cache_dir=self.cache_dir, progress=self.progress,
                                batch_size=self.config.batch_size, **settings.keywords())
        self.generators.append(generator)
        return generator

    def _payoff(self, generator):
        from captum_diffusion.scoring import PromptScore

        return PromptScore(generator, self.model.scorer, self.prompt)

    def at(self, settings):
        """The payoff of the prompt at ``settings`` over the run's (a ``GenerationSettings`` of overrides)."""
        if settings not in self._others:
            merged = self.settings.replace(**settings.keywords())
            self._others[settings] = self._payoff(self._generator(merged))
        return self._others[settings]

    def count(self, counts: dict) -> None:
        """Add the images generated and read from the cache to the manifest's ``counts``."""
        for generator in self.generators:
            counts["images_generated"] += generator.n_generated
            counts["images_from_cache"] += generator.n_from_cache


def _wants_attention(config: RunConfig, model) -> bool:
    if config.attention == "none":
        return False
    from captum_diffusion.attention import attention_family

    try:  # DAAM traces UNet, SD3, FLUX and PixArt pipelines
        attention_family(model.pipeline)
    except TypeError as error:
        if config.attention == "daam":
            raise ValueError(f"--attention daam: {error}") from None
        return False
    return True


def attention_maps(pipeline, generator, spec: PromptSpec) -> tuple[list[str], np.ndarray]:
    """DAAM maps of the prompt's (or ``spec.words``') words, traced on exactly the generation ``generator`` makes
    for the full prompt (same latents, noise and settings).

    Returns
    -------
    labels : list of str
        The mapped words' labels.
    maps : numpy.ndarray
        ``(n_words, H, W)`` in image pixels.
    """
    from captum_diffusion.attention import DAAM

    result = DAAM(pipeline).explain(spec.prompt, words=None if spec.words is None else list(spec.words),
                                    progress=False, **generator.pipeline_kwargs(1))
    return list(result.words[0]), result.heatmaps[0].numpy()


def segment_table(kind: str, image, spec: PromptSpec, scorer, maps) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The segment-by-word table of one seed's image.

    Parameters
    ----------
    kind : str
        ``"slic"``, ``"daam-kmeans"`` or ``"sam:CHECKPOINT"``.
    image : PIL.Image.Image
        The full prompt's image.
    spec : PromptSpec
        The prompt (``spec.words``: the table's words, default all).
    scorer : protocols.Scorer
        The run's scorer.
    maps : numpy.ndarray or None
        DAAM maps ``(n_words, H, W)`` (needed by ``"daam-kmeans"``).

    Returns
    -------
    segments : numpy.ndarray
        Label map ``(H, W)``.
    table : numpy.ndarray
        ``(n_segments, n_words)`` scores.
    words : list of str
        The table's words.
    """
    from captum_diffusion.image import (DAAMKMeansSegmenter, SAMSegmenter, SuperpixelSegmenter,
                                        segment_word_table)

    words = list(spec.words) if spec.words is not None else None
    if kind == "slic":
        segmenter = SuperpixelSegmenter("slic")
    elif kind == "daam-kmeans":
        if maps is None:
            raise ValueError("--segments daam-kmeans needs attention maps (--attention daam)")
        segmenter = DAAMKMeansSegmenter(maps, n_clusters=min(len(maps) + 1, 8))
    else:
        segmenter = SAMSegmenter(checkpoint=kind[len("sam:"):])
    table = segment_word_table(image, spec.prompt, scorer, segmenter=segmenter, words=words)
    return table.segments, table.values, list(table.words)
