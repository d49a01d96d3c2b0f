"""DAAM (Tang et al., ACL 2023, section 2.2): per-word heat maps from a text-to-image model's attention, on
UNets (SD 1.x / 2.x / XL), SD3 / SD3.5, FLUX.1 and PixArt-Σ.

For word ``k`` and generated image ``x`` the map is

    D_k[x, y] = sum over time steps t, text-attention layers l, heads h and the word's tokens j of
                bicubic_upsample(A[t, l, h][:, j])[x, y]

where ``A[t, l, h]`` is the softmax attention of the image positions (the layer's latent grid) over the
prompt's tokens, upsampled from the layer's grid to the image's ``(H, W)``. Bicubic interpolation is linear,
so summing the heads, steps and layers of one grid size *before* upsampling gives the same map; the trace
therefore keeps one running sum of shape ``(images, grid_h * grid_w, tokens)`` per grid size and upsamples
once at the end: its memory is O(tokens x H x W) whatever the number of steps, layers and heads.

Which layers, which tokens: UNet and PixArt attend to the text in cross-attention layers (softmax over the
text only); SD3 and FLUX in joint attention (one softmax over image and text keys together). A map always
uses the image queries' attention over the text keys renormalised to sum to 1 over the text (``text_softmax=
"text"``), which is what cross-attention gives, so a map means the same for every family; ``"joint"`` keeps
the joint softmax's text columns as they are (see ``families.image_text_attention`` for the reason). SD3 has
CLIP and T5 positions for every word; a map sums both by default (``text_encoder="clip"`` / ``"t5"`` picks
one; see ``sd3.SD3Family``). What each family traces lives in ``captum_diffusion/attention/<family>.py``.

The hook point is diffusers' attention processors: while tracing, every selected layer runs its family's
tracing processor, which computes what the layer's processor computes and adds the attention to the trace.
The original processors come back afterwards, also when generation raises.

Batch layout: with classifier-free guidance the denoiser sees ``[unconditional; conditional]`` (the negative
prompt is the unconditional half), without it only the conditional rows; the trace tells the two apart from
the batch size, so ``guidance_scale <= 1`` works too. FLUX's true CFG runs the negative prompt as a separate
call, recognised by its text input.
"""
from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from captum.attr import Attribution

from captum_diffusion import checks
from captum_diffusion.generation.settings import GenerationSettings
from captum_diffusion.attention.families import TEXT_SOFTMAX, AttentionFamily
from captum_diffusion.attention.registry import attention_family
from captum_diffusion.words.game import split_words
from captum_diffusion.words.tokens import merge_positions, select_words, word_token_positions

Size = tuple[int, int]


# --------------------------------------------------------------------------------------------- the trace

class DAAMTrace:
    """Running sums of image-to-text attention during one generation (what :meth:`DAAM.tracing` yields).

    Parameters
    ----------
    n_images : int
        Conditional rows of the denoiser batch (prompts x images per prompt).
    steps : iterable of int, optional
        Denoising-step indices to include (``None`` = all; step ``i`` is the ``i``-th conditional denoiser call).
    resolutions : iterable of (int, int), optional
        Grid sizes ``(h, w)`` to include, in latent positions (``None`` = all).
    keep_uncond : bool, default False
        Also sum the unconditional (negative prompt) rows when classifier-free guidance is on.
    text_softmax : {"text", "joint"}, default "text"
        How joint attention's text columns are read (``families.image_text_attention``).

    Notes
    -----
    The grids come from the denoiser calls (:meth:`begin_call`): a layer's grid is the one whose ``h * w``
    matches its image sequence length. The sums are float32 ``(n_images, h * w, text positions)`` per grid.
    """

    def __init__(self, n_images: int, *, steps: Optional[Iterable[int]] = None,
                 resolutions: Optional[Iterable[Size]] = None, keep_uncond: bool = False, text_softmax: str = "text"):
        self.n_images = n_images
        self.steps = None if steps is None else frozenset(steps)
        self.resolutions = None if resolutions is None else frozenset(tuple(r) for r in resolutions)
        self.keep_uncond = keep_uncond
        self.text_softmax = text_softmax
        self.grids: list[Size] = []
        self.text_length: Optional[int] = None  # text positions of the current call (FLUX's single-stream blocks)
        self.uncond_call = False  # the current call is a separate unconditional pass (FLUX true CFG)
        self.extra_call = False  # the current call is an extra pass that is not traced (SD3 skip-layer guidance)
        self.step = -1  # index of the current conditional denoiser call
        self.sums: dict[Size, list] = {}  # grid -> [cond (n, h*w, T) float32, uncond or None]
        self.guided: Optional[bool] = None  # classifier-free guidance seen (batch 2n / separate calls) or not
        self.n_traced = 0  # layer calls added to the sums

    def begin_call(self, grids: list[Size], text_length: Optional[int], uncond_call: bool = False,
                   extra_call: bool = False) -> None:
        """A denoiser call starts: its attention grids, its text length, whether it is a separate
        unconditional pass or an extra pass that is not traced (then the step does not advance)."""
        if self.resolutions is not None and not self.resolutions <= set(grids):
            raise ValueError(f"resolutions {sorted(self.resolutions)} are not attention grids of this generation; "
                             f"its grids (h, w) are {grids}")
        self.grids, self.text_length = list(grids), text_length
        self.uncond_call, self.extra_call = uncond_call, extra_call
        if uncond_call:
            self.guided = True
        elif not extra_call:
            self.step += 1

    def grid(self, sequence_length: int) -> Optional[Size]:
        """The ``(h, w)`` grid of a layer whose image sequence has this length, if it is traced now."""
        if self.extra_call or (self.steps is not None and self.step not in self.steps):
            return None
        if self.uncond_call and not self.keep_uncond:
            return None
        for size in self.grids:
            if size[0] * size[1] == sequence_length:
                return size if self.resolutions is None or size in self.resolutions else None
        raise RuntimeError(f"an attention layer sees {sequence_length} image positions, which matches no attention "
                           f"grid of the denoiser's input ({self.grids})")

    def rows(self, batch: int) -> slice:
        """The rows of a denoiser batch of ``batch`` rows that the sums need: the conditional half alone under
        classifier-free guidance unless the unconditional one is kept, else all (for :meth:`add`)."""
        if batch == 2 * self.n_images and not self.keep_uncond:
            return slice(self.n_images, batch)
        return slice(0, batch)

    def add(self, probs: torch.Tensor, size: Size, batch: Optional[int] = None) -> None:
        """Add one layer's attention ``probs`` (rows, heads, h * w, text positions), summed over heads: all
        ``batch`` rows of the denoiser batch (default: ``probs``' rows) or only :meth:`rows` of them."""
        per_row = probs.sum(1, dtype=torch.float32)
        batch = per_row.shape[0] if batch is None else batch
        if self.uncond_call and batch == self.n_images:
            uncond, cond = per_row, None
        elif batch == 2 * self.n_images:
            self.guided = True
            whole = per_row.shape[0] == batch  # else the conditional half alone
            uncond, cond = (per_row[: self.n_images], per_row[self.n_images:]) if whole else (None, per_row)
        elif batch == self.n_images:
            self.guided = bool(self.guided)
            uncond, cond = None, per_row
        else:
            raise RuntimeError(f"the denoiser batch has {batch} rows, expected {self.n_images} (no guidance) or "
                               f"{2 * self.n_images} (classifier-free guidance) for {self.n_images} images")
        entry = self.sums.get(size)
        if entry is None:
            entry = self.sums[size] = [torch.zeros_like(per_row[: self.n_images]), None]
        if cond is not None:
            entry[0] += cond
        if uncond is not None and self.keep_uncond:
            if entry[1] is None:
                entry[1] = torch.zeros_like(uncond)
            entry[1] += uncond
        self.n_traced += 1

    @property
    def nbytes(self) -> int:
        """Bytes held by the running sums."""
        return sum(t.numel() * t.element_size() for entry in self.sums.values() for t in entry if t is not None)

    def word_maps(self, image: int, positions: Sequence[Sequence[int]], size: Size, *,
                  uncond: bool = False) -> torch.Tensor:
        """Heat maps ``(len(positions), H, W)`` float32 on the CPU for image ``image``: for each group of token
        positions, the sum of their attention, upsampled bicubically to ``size = (H, W)`` and summed over
        grids. ``uncond=True`` reads the unconditional half (needs ``keep_uncond`` and guidance)."""
        out = torch.zeros(len(positions), *size)
        for (h, w), entry in self.sums.items():
            sums = entry[1 if uncond else 0]
            if sums is None:
                raise ValueError("no unconditional attention was traced: it needs keep_uncond=True and "
                                 "classifier-free guidance (guidance_scale > 1)")
            grid = torch.stack([sums[image][:, list(p)].sum(-1) for p in positions]).reshape(1, len(positions), h, w)
            out += F.interpolate(grid, size=size, mode="bicubic", align_corners=False)[0].cpu()
        return out


# --------------------------------------------------------------------------------------------- the result

@dataclass
class DAAMResult:
    """What :meth:`DAAM.explain` returns; lists run over generated images (prompt-major, as diffusers
    orders them: prompt 0's images first).

    Parameters
    ----------
    images : list of PIL.Image.Image
        The generated images.
    heatmaps : list of torch.Tensor
        ``heatmaps[i]``: float32 ``(len(words[i]), H, W)`` at image ``i``'s size, unnormalised DAAM sums
        (attention mass, >= 0 up to bicubic overshoot).
    words : list of list of str
        ``words[i]``: the labels of image ``i``'s maps (a repeated word is ``a#0``, ``a#1``).
    prompts : list of str
        ``prompts[i]``: image ``i``'s prompt.
    negative_heatmaps, negative_words : list, optional
        The same for the negative prompt when requested (``explain(negative_maps=True)``), else ``None``.
    trace_bytes : int, default 0
        Bytes the trace's running sums held (its memory, whatever the number of steps and layers).
    """

    images: list
    heatmaps: list[torch.Tensor]
    words: list[list[str]]
    prompts: list[str]
    negative_heatmaps: Optional[list[torch.Tensor]] = None
    negative_words: Optional[list[list[str]]] = None
    trace_bytes: int = field(default=0, repr=False)

    def __len__(self) -> int:
        return len(self.images)

    def heatmap(self, word: Union[str, int], image: int = 0) -> torch.Tensor:
        """One word's map in one image.

        Parameters
        ----------
        word : str or int
            A label from ``words[image]`` or its index.
        image : int, default 0
            The image's index.

        Returns
        -------
        torch.Tensor
            float32 ``(H, W)`` at the image's size.
        """
        image = checks.index(image, len(self.heatmaps), "image (an image index)")
        return self.heatmaps[image][self._word_index(word, image)]

    def threshold(self, tau: float = 0.4, normalization: str = "minmax") -> list[torch.Tensor]:
        """Binary masks per image (DAAM eq. 7): each word's map normalised to [0, 1], then ``> tau``.

        Parameters
        ----------
        tau : float, default 0.4
            The threshold, a fraction of each normalised map, in [0, 1].
        normalization : {"minmax", "max"}, default "minmax"
            As :func:`threshold_maps`.

        Returns
        -------
        list of torch.Tensor
            Per image, ``bool`` ``(n_words, H, W)``.
        """
        return [threshold_maps(maps, tau, normalization) for maps in self.heatmaps]

    def plot(self, image: int = 0, words: Optional[Sequence[Union[str, int]]] = None, *, alpha: float = 0.5,
             cmap: str = "jet", panel_size: float = 2.5):
        """Image ``image``, then one panel per word with its map (minus its minimum) blended over the image by
        captum's ``visualize_image_attr``.

        Parameters
        ----------
        image : int, default 0
            The image's index.
        words : sequence of str or int, optional
            Labels or indices of the words to show (default: all).
        alpha : float, default 0.5
            Opacity of the maps over the image, in [0, 1].
        cmap : str, default "jet"
            matplotlib colour map.
        panel_size : float, default 2.5
            Width and height of one panel, in inches.

        Returns
        -------
        matplotlib.figure.Figure
            Never shown; the caller saves or shows it.
        """
        from captum.attr import visualization as viz
        from matplotlib.figure import Figure

        image = checks.index(image, len(self), "image (an image index)")
        alpha = checks.finite_number(alpha, "alpha", low=0.0, high=1.0)
        panel_size = checks.finite_number(panel_size, "panel_size", low=0.0, low_open=True)
        indices = (range(len(self.words[image])) if words is None
                   else [self._word_index(w, image) for w in checks.sequence(words, "words")])
        picture = np.asarray(self.images[image].convert("RGB"))
        fig = Figure(figsize=(panel_size * (len(indices) + 1), panel_size))
        axes = fig.subplots(1, len(indices) + 1, squeeze=False)[0]
        axes[0].imshow(picture)
        axes[0].set_title(self.prompts[image], fontsize=8)
        axes[0].axis("off")
        for ax, index in zip(axes[1:], indices):
            heat = self.heatmaps[image][index].numpy()
            heat = heat - heat.min()  # the offset every pixel gets would otherwise colour the whole image
            if heat.max() > 0:
                viz.visualize_image_attr(heat, picture, method="blended_heat_map", sign="positive", cmap=cmap,
                                         plt_fig_axis=(fig, ax), alpha_overlay=alpha, use_pyplot=False)
            else:  # captum asserts on a map without positive values: show the bare image
                ax.imshow(picture)
                ax.axis("off")
            ax.set_title(self.words[image][index])
        return fig

    def _word_index(self, word: Union[str, int], image: int) -> int:
        labels = self.words[image]
        if isinstance(word, int) and not isinstance(word, bool):
            if not -len(labels) <= word < len(labels):
                raise ValueError(f"word index {word} out of range for words {labels}")
            return word % len(labels)
        if word not in labels:
            raise ValueError(f"word {word!r} has no map for image {image}; its words are {labels}")
        return labels.index(word)


def threshold_maps(maps: torch.Tensor, tau: float = 0.4, normalization: str = "minmax") -> torch.Tensor:
    """Binarise heat maps per map (DAAM eq. 7): normalise each map, then keep pixels ``> tau``.

    Parameters
    ----------
    maps : torch.Tensor or array_like
        Heat maps ``(..., H, W)``, finite.
    tau : float, default 0.4
        The threshold in [0, 1], a fraction of each normalised map.
    normalization : {"minmax", "max"}, default "minmax"
        ``"minmax"`` (as the DAAM authors' code): ``(D - min) / (max - min)``, so the threshold is relative to
        the map's own range and a constant offset (attention every pixel gets) does not matter. ``"max"``:
        ``D / max``, the equation as printed.

    Returns
    -------
    torch.Tensor
        ``bool`` of the maps' shape. A constant map (or, with ``"max"``, one without positive values) gives an
        all-false mask.
    """
    if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not 0.0 <= float(tau) <= 1.0:
        raise ValueError(f"tau must be a number in [0, 1] (a fraction of each normalised map), got {tau!r}")
    if normalization not in ("minmax", "max"):
        raise ValueError(f"normalization must be 'minmax' or 'max', got {normalization!r}")
    if not isinstance(maps, torch.Tensor) or not maps.is_floating_point():
        maps = torch.as_tensor(checks.numeric_array(maps, "maps", finite=False))
    if maps.ndim < 2 or maps.shape[-1] == 0 or maps.shape[-2] == 0:
        raise ValueError(f"maps must be heat maps (..., H, W) with H, W >= 1, got shape {tuple(maps.shape)}")
    if not torch.isfinite(maps).all():
        raise ValueError(f"maps hold {int((~torch.isfinite(maps)).sum())} NaN / inf value(s); a heat map must be finite")
    flat = maps.flatten(-2)
    high = flat.amax(-1)[..., None, None]
    low = flat.amin(-1)[..., None, None] if normalization == "minmax" else torch.zeros_like(high)
    span = high - low
    return ((maps - low) > tau * span) & (span > 0)


# --------------------------------------------------------------------------------------------- DAAM

class DAAM(Attribution):
    """Diffusion Attentive Attribution Maps for a diffusers text-to-image pipeline.

    A ``captum.attr.Attribution`` whose ``forward_func`` is the pipeline. The package's captum convention:
    :meth:`attribute` returns captum's tensor ``(n_images, n_words, H, W)``, :meth:`explain` (same arguments)
    the rich :class:`DAAMResult` (:class:`~captum_diffusion.protocols.AttentionMethod`). The generation keywords
    come as one ``settings=GenerationSettings(...)`` (shared with ``TextToImage``) or as plain keywords.

    Parameters
    ----------
    pipeline : diffusers pipeline
        A UNet pipeline (``StableDiffusionPipeline``, ``StableDiffusionXLPipeline``, ...),
        ``StableDiffusion3Pipeline`` (SD3 / SD3.5), ``FluxPipeline`` (FLUX.1) or ``PixArtSigmaPipeline`` /
        ``PixArtAlphaPipeline``, with its tokenizers; the family is found from the denoiser's class
        (``captum_diffusion.attention``). ``TypeError`` for anything else, ``ValueError`` for a denoiser without
        text attention.
    text_encoder : str, optional
        Which text encoder's token positions a word's map sums: ``None`` (default) = every encoder whose tokens
        the image attends to (SD3: CLIP and T5; the others have one), or ``"clip"`` / ``"t5"`` where the family
        has it.
    text_softmax : {"text", "joint"}, default "text"
        ``"text"``: attention renormalised over the text keys, as cross-attention is; ``"joint"``: joint
        attention's text columns as they are. The same for every family, and no difference for cross-attention
        (UNet, PixArt).

    Examples
    --------
    >>> daam = DAAM(pipe)
    >>> maps = daam.attribute("a red circle", words=["red", "circle"], generator=torch.Generator().manual_seed(0))
    >>> maps.shape                             # (1, 2, H, W) float32
    >>> settings = GenerationSettings(num_inference_steps=20, height=512, width=512)
    >>> result = daam.explain("a red circle", words=["red", "circle"], settings=settings,
    ...                       generator=torch.Generator().manual_seed(0))
    >>> result.heatmap("circle")               # (H, W); result.images[0] is the generated image
    >>> masks = result.threshold(0.4)          # list of bool (2, H, W)
    >>> fig = result.plot()                    # matplotlib Figure
    """

    def __init__(self, pipeline, *, text_encoder: Optional[str] = None, text_softmax: str = "text"):
        self.family: AttentionFamily = attention_family(pipeline)
        encoders = self.family.text_keys()
        if not encoders:
            raise TypeError(f"DAAM needs the pipeline's tokenizer to map words to tokens; "
                            f"{type(pipeline).__name__} has none")
        if text_encoder is not None and text_encoder not in encoders:
            raise ValueError(f"text_encoder={text_encoder!r}: the text of this {self.family.name} pipeline holds the "
                             f"tokens of {sorted(encoders)}; give one of them or None (all)")
        if text_softmax not in TEXT_SOFTMAX:
            raise ValueError(f"text_softmax must be one of {TEXT_SOFTMAX}, got {text_softmax!r}")
        super().__init__(pipeline)
        self.pipeline = pipeline
        self.text_encoder = text_encoder
        self.text_softmax = text_softmax
        if not self.attention_layers:
            raise ValueError(f"{type(self.family.denoiser).__name__} of {type(pipeline).__name__} has no "
                             f"cross-attention layers, so there is no word-to-pixel attention to trace")

    @property
    def attention_layers(self) -> list[str]:
        """list of str: names of the layers whose image queries attend to the text: cross-attention (UNet
        ``"up_blocks.1.attentions.0.transformer_blocks.0.attn2"``, PixArt ``"transformer_blocks.0.attn2"``) or
        joint attention (SD3 ``"transformer_blocks.0.attn"``, FLUX also ``"single_transformer_blocks.0.attn"``)."""
        return self.family.text_layers()

    def _select_layers(self, layers: Optional[Iterable[str]]) -> list[str]:
        available = self.attention_layers
        if layers is None:
            return available
        if isinstance(layers, str):
            layers = [layers]
        layers = checks.string_list(layers, "layers", allow_single=False)
        if not layers:
            raise ValueError(f"layers is empty; give None (all) or names / dotted prefixes of {available}")
        chosen = []
        for pattern in layers:
            matched = [n for n in available if n == pattern or n.startswith(pattern.rstrip(".") + ".")]
            if not matched:
                raise ValueError(f"layers: {pattern!r} matches no text-attention layer; give full names or dotted "
                                 f"prefixes (e.g. 'up_blocks', 'down_blocks.1', 'transformer_blocks', "
                                 f"'single_transformer_blocks.3') of {available}")
            chosen += [n for n in matched if n not in chosen]
        return chosen

    @contextlib.contextmanager
    def tracing(self, n_images: int, height: int, width: int, *, steps: Optional[Iterable[int]] = None,
                layers: Optional[Iterable[str]] = None, resolutions: Optional[Iterable] = None,
                keep_uncond: bool = False) -> Iterator[DAAMTrace]:
        """Context manager: while inside, generations with ``self.pipeline`` add their image-to-text attention
        to the yielded :class:`DAAMTrace` (:meth:`explain` uses it around one pipeline call).

        Parameters
        ----------
        n_images : int
            Images the generation makes (prompts x images per prompt).
        height, width : int
            The images' size in pixels.
        steps, layers, resolutions
            As :meth:`explain`.
        keep_uncond : bool, default False
            Also sum the unconditional (negative prompt) rows under classifier-free guidance.

        Yields
        ------
        DAAMTrace
            The running sums. On exit, also on an exception, the denoiser's processors are restored and the
            call hook removed.
        """
        family = self.family
        denoiser = family.denoiser
        trace = DAAMTrace(n_images, steps=steps, keep_uncond=keep_uncond, text_softmax=self.text_softmax,
                          resolutions=_check_resolutions(resolutions, family.grids(height, width)))
        selected = {f"{n}.processor" for n in self._select_layers(layers)}
        originals = dict(denoiser.attn_processors)
        for key in selected:
            name = key[: -len(".processor")]
            family.check_layer(name, denoiser.get_submodule(name), originals[key])
        conditional_text = []  # the text input of the first call: the prompt's (the negative's comes separately)

        def on_call(module, args, kwargs):
            text = family.call_text(args, kwargs)
            if not conditional_text:
                conditional_text.append(text.data_ptr())
            uncond = family.separate_uncond_calls and text.data_ptr() != conditional_text[0]
            trace.begin_call(family.call_grids(args, kwargs), text.shape[1], uncond, family.extra_call(kwargs))

        denoiser.set_attn_processor({k: family.tracing_processor(trace, p) if k in selected else p
                                     for k, p in originals.items()})
        counter = denoiser.register_forward_pre_hook(on_call, with_kwargs=True)
        try:
            yield trace
        finally:
            counter.remove()
            denoiser.set_attn_processor(dict(originals))

    def attribute(self, prompts: Union[str, Sequence[str]], *, words=None, **options) -> torch.Tensor:
        """Generate images for ``prompts`` and return their DAAM heat maps as one tensor (captum's contract).

        Parameters
        ----------
        prompts : str or sequence of str
            As :meth:`explain`.
        words : optional
            As :meth:`explain`. Every prompt must address the same number of words (``ValueError``, raised before
            generating, otherwise): use :meth:`explain` for per-image lists.
        **options
            :meth:`explain`'s other keywords (``generator``, ``settings``, ``negative_prompt``,
            ``num_images_per_prompt``, ``steps``, ``layers``, ``resolutions``, ``progress``, pipeline keywords such
            as ``num_inference_steps``), all but ``negative_maps``.

        Returns
        -------
        torch.Tensor
            float32 CPU ``(n_images, n_words, H, W)``: ``torch.stack`` of ``explain(...).heatmaps`` (images
            prompt-major, words in the order addressed; unnormalised attention mass per pixel). :meth:`explain`
            also gives the images, the word labels, negative-prompt maps, thresholding and plots.
        """
        if options.get("negative_maps", False):
            raise ValueError("attribute() returns the prompts' maps only; use explain(..., negative_maps=True) for "
                             "the negative prompt's maps (DAAMResult.negative_heatmaps)")
        settings, _ = _generation_settings(options.get("settings"), options)
        counts = [len(t) for t in self._targets(prompts, words, settings.max_sequence_length)[1]]
        if len(set(counts)) > 1:
            raise ValueError(f"attribute() stacks the maps into one (n_images, n_words, H, W) tensor, but the prompts "
                             f"address different numbers of words {counts}; give words= with as many words per "
                             f"prompt, or call explain(...), whose DAAMResult keeps one (n_words, H, W) map per image")
        return torch.stack(self.explain(prompts, words=words, **options).heatmaps).to(torch.float32)

    def _targets(self, prompts, words, max_sequence_length: Optional[int]) -> tuple[list[str], list]:
        """The prompts as a list and, per prompt, its addressed words (``WordTokens``, positions in the text
        keys of the chosen encoders), checked."""
        prompts = _as_prompts(prompts, "prompts")
        per_prompt_words = _per_prompt(words, len(prompts))
        return prompts, [self.word_tokens(p, w, max_sequence_length=max_sequence_length)
                         for p, w in zip(prompts, per_prompt_words)]

    def word_tokens(self, prompt: str, words=None, *, max_sequence_length: Optional[int] = None) -> list:
        """The addressed words of ``prompt`` with their positions in the text keys the maps read.

        Parameters
        ----------
        prompt : str
            One prompt.
        words : optional
            Word specs as in :meth:`explain` (``None``: every word).
        max_sequence_length : int, optional
            The call's T5 limit (default: the pipeline's).

        Returns
        -------
        list of WordTokens
            Labels and positions in every chosen text encoder's tokens (e.g. SD3's CLIP positions 0..76, then
            T5's from 77).
        """
        encoders = self.family.text_keys(max_sequence_length)
        if self.text_encoder is not None:
            encoders = {self.text_encoder: encoders[self.text_encoder]}
        seen = self.family.tokenized_prompt(prompt)
        aligned = merge_positions(*[word_token_positions(seen, e.tokenizer, max_length=e.limit, offset=e.offset)
                                    for e in encoders.values()])
        aligned = [(word, positions) for word, (_, positions) in zip(split_words(prompt), aligned)]
        limits = " and ".join(f"{name}'s {e.limit}-token limit" for name, e in encoders.items())
        return select_words(prompt, aligned, words, limit_note=limits)

    def explain(self, prompts: Union[str, Sequence[str]], *, words=None, generator=None,
                settings: Optional[GenerationSettings] = None,
                negative_prompt: Union[None, str, Sequence[str]] = None, num_images_per_prompt: int = 1,
                steps: Optional[Iterable[int]] = None, layers: Optional[Iterable[str]] = None,
                resolutions: Optional[Iterable] = None, negative_maps: bool = False,
                progress: Optional[bool] = None, **pipeline_kwargs) -> DAAMResult:
        """Generate images for ``prompts`` and return per-word DAAM heat maps with them.

        Parameters
        ----------
        prompts : str or sequence of str
            A prompt or a list.
        words : optional
            ``None`` (every word), word specs applied to every prompt (``"dog"``, ``"red#1"``, ``("red", 1)``, a
            word index; see :mod:`captum_diffusion.words.tokens`), or one list of specs per prompt.
        generator : torch.Generator or list of torch.Generator, optional
            One generator, or one per image (diffusers' ``generator=``).
        settings : GenerationSettings, optional
            The generation keywords (``num_inference_steps``, ``guidance_scale``, ``height``, ``width`` in pixels,
            ``max_sequence_length``: the T5 limit words are matched under) as one object, shared with
            ``TextToImage`` and a run's configuration. They may also be given as plain keywords (each once).
            ``height`` / ``width`` default to the pipeline's size.
        negative_prompt : str or sequence of str, optional
            One, or one per prompt.
        num_images_per_prompt : int, default 1
        steps : int or iterable of int, optional
            Denoising-step indices (0 = first, noisiest) to sum over; ``None`` = all.
        layers : iterable of str, optional
            Names or dotted prefixes of :attr:`attention_layers` (blocks: e.g. ``"up_blocks"``,
            ``"transformer_blocks.3"``, ``"single_transformer_blocks"``); ``None`` = all.
        resolutions : iterable, optional
            Attention grid sizes to keep, ``(h, w)`` tuples or ``int`` for square grids, in latent positions (e.g.
            64, 32, 16, 8 for SD at 512 px; transformers attend at one grid, 64 for SD3 / FLUX at 1024 px).
        negative_maps : bool, default False
            Also return maps of ``negative_prompt``'s words (needs guidance; FLUX: ``true_cfg_scale > 1``).
        progress : bool, optional
            Show the pipeline's tqdm bar (``None`` leaves the pipeline's setting).
        **pipeline_kwargs
            Other keyword arguments of the pipeline call (e.g. ``true_cfg_scale``, ``latents``).

        Returns
        -------
        DAAMResult
            The images, per image a float32 ``(n_words, H, W)`` map at the image's size (unnormalised attention
            mass) and its word labels; thresholding and plots. :meth:`attribute` gives the stacked tensor.
        """
        settings, pipeline_kwargs = _generation_settings(settings, pipeline_kwargs)
        for reserved in ("prompt", "output_type", "prompt_embeds"):
            if reserved in pipeline_kwargs:
                raise TypeError(f"DAAM got {reserved!r}: it passes the prompts itself and returns PIL images")
        call = {**settings.keywords(), **pipeline_kwargs}
        self.family.check_call(call)
        prompts, targets = self._targets(prompts, words, call.get("max_sequence_length"))
        negatives = _negatives(negative_prompt, len(prompts))
        negative_targets = self._negative_targets(negatives, negative_maps, call.get("max_sequence_length"))
        n_images = len(prompts) * checks.positive_int(num_images_per_prompt, "num_images_per_prompt")
        _check_generator(generator, n_images)
        steps = _check_steps(steps)
        height, width = self._size(settings)
        call.update(prompt=prompts, height=height, width=width, num_images_per_prompt=num_images_per_prompt,
                    generator=generator, output_type="pil")
        if negatives is not None:
            call["negative_prompt"] = negatives
        with _progress(self.pipeline, progress), self.tracing(n_images, height, width, steps=steps, layers=layers,
                                                              resolutions=resolutions, keep_uncond=negative_maps) as trace:
            images = self.pipeline(**call).images
        _check_trace(trace, steps, negative_maps, settings)
        return _result(images, trace, prompts, targets, negative_targets, num_images_per_prompt)

    def _negative_targets(self, negatives: Optional[list[str]], negative_maps: bool,
                          max_sequence_length: Optional[int]) -> Optional[list]:
        """Per negative prompt, its words (``WordTokens``) when ``negative_maps``, else ``None``."""
        if not negative_maps:
            return None
        if negatives is None:
            raise ValueError("negative_maps=True needs a negative_prompt whose words to map")
        return [self.word_tokens(n, max_sequence_length=max_sequence_length) for n in negatives]

    def _size(self, settings: GenerationSettings) -> Size:
        """``(height, width)`` in pixels: the settings', else the pipeline's default size."""
        if settings.height is not None and settings.width is not None:
            return settings.height, settings.width
        default = self.family.default_size()
        return (default[0] if settings.height is None else settings.height,
                default[1] if settings.width is None else settings.width)


# --------------------------------------------------------------------------------------------- argument checks

def _generation_settings(settings: Optional[GenerationSettings], keywords: dict) -> tuple[GenerationSettings, dict]:
    """``settings`` with the generation keywords among ``keywords`` (the plain-keyword form) merged in, checked,
    and the other keywords; a setting given both ways is a ``TypeError``. ``keywords`` is not changed."""
    names = [f.name for f in dataclasses.fields(GenerationSettings)]
    loose = {name: keywords[name] for name in names if keywords.get(name) is not None}
    rest = {key: value for key, value in keywords.items() if key not in names and key != "settings"}
    if settings is None:
        return GenerationSettings(**loose), rest
    if not isinstance(settings, GenerationSettings):
        raise TypeError(f"settings must be a captum_diffusion.generation.settings.GenerationSettings or None, got "
                        f"{type(settings).__name__}")
    twice = sorted(name for name in loose if getattr(settings, name) is not None)
    if twice:
        raise TypeError(f"{twice} given both as keywords and in settings; give each once")
    return settings.replace(**loose), rest


def _negatives(negative_prompt, n_prompts: int) -> Optional[list[str]]:
    """``negative_prompt`` as one negative prompt per prompt (one is repeated), or ``None``."""
    if negative_prompt is None:
        return None
    negatives = _as_prompts(negative_prompt, "negative_prompt", allow_empty=True)
    if len(negatives) == 1:
        negatives = negatives * n_prompts
    if len(negatives) != n_prompts:
        raise ValueError(f"negative_prompt has {len(negatives)} entries for {n_prompts} prompts")
    return negatives


def _check_trace(trace: DAAMTrace, steps: Optional[frozenset], negative_maps: bool,
                 settings: GenerationSettings) -> None:
    """``ValueError`` where the finished generation cannot give the maps that were asked for."""
    if steps is not None and trace.step < max(steps):
        raise ValueError(f"steps {sorted(steps)} reach past the generation's {trace.step + 1} denoising steps "
                         f"(indices 0..{trace.step})")
    if negative_maps and not trace.guided:
        raise ValueError("negative_maps=True needs classifier-free guidance (guidance_scale > 1; FLUX: "
                         "true_cfg_scale > 1): without it the negative prompt is not used")
    if not all(torch.isfinite(entry[0]).all() for entry in trace.sums.values()):
        raise ValueError(f"the generation's attention is NaN / inf (guidance_scale={settings.guidance_scale}, "
                         f"num_inference_steps={settings.num_inference_steps}): the latents overflowed, so there "
                         f"are no maps; use a usual guidance_scale (1..20) or a float32 pipeline")


def _result(images: list, trace: DAAMTrace, prompts: list[str], targets: list, negative_targets: Optional[list],
            num_images_per_prompt: int) -> DAAMResult:
    """The :class:`DAAMResult` of a finished trace: each image's maps at its own size (FLUX rounds height / width
    down to 16 px), for its prompt's words (and its negative prompt's)."""
    owner = [i // num_images_per_prompt for i in range(len(images))]
    sizes = [(image.size[1], image.size[0]) for image in images]

    def maps(per_prompt: list, uncond: bool = False) -> list[torch.Tensor]:
        return [trace.word_maps(i, [t.positions for t in per_prompt[o]], sizes[i], uncond=uncond)
                for i, o in enumerate(owner)]

    result = DAAMResult(images=list(images), prompts=[prompts[o] for o in owner], trace_bytes=trace.nbytes,
                        heatmaps=maps(targets), words=[[t.label for t in targets[o]] for o in owner])
    if negative_targets is not None:
        result.negative_heatmaps = maps(negative_targets, uncond=True)
        result.negative_words = [[t.label for t in negative_targets[o]] for o in owner]
    return result

def _as_prompts(prompts, name: str, allow_empty: bool = False) -> list[str]:
    if isinstance(prompts, str):
        prompts = [prompts]
    if not isinstance(prompts, Sequence) or not all(isinstance(p, str) for p in prompts):
        raise TypeError(f"{name} must be a str or a sequence of str, got {type(prompts).__name__}")
    if not prompts:
        raise ValueError(f"{name} is empty; give at least one prompt")
    if not allow_empty:
        for p in prompts:
            if not p.strip():
                raise ValueError(f"{name} contains an empty prompt {p!r}; DAAM needs words to map")
    return list(prompts)


def _per_prompt(words, n_prompts: int) -> list:
    """``words`` as one spec list (or ``None``) per prompt: a list of lists (or ``None``) is per prompt."""
    nested = isinstance(words, (list, tuple)) and len(words) > 0 and all(isinstance(w, (list, type(None))) for w in words)
    if not nested:
        return [words] * n_prompts
    if len(words) != n_prompts:
        raise ValueError(f"words has {len(words)} per-prompt lists for {n_prompts} prompts")
    return list(words)


def _check_steps(steps) -> Optional[frozenset]:
    if steps is None:
        return None
    if isinstance(steps, int) and not isinstance(steps, bool):
        steps = [steps]
    steps = checks.sequence(steps, "steps")
    if not steps or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in steps):
        raise ValueError(f"steps must be None or non-negative int step indices (0 = first denoising step), got {steps}")
    return frozenset(steps)


def _check_generator(generator, n_images: int) -> None:
    """``None``, one ``torch.Generator`` or a list of ``n_images`` of them (diffusers' ``generator=``)."""
    if generator is None or isinstance(generator, torch.Generator):
        return
    if isinstance(generator, (list, tuple)) and all(isinstance(g, torch.Generator) for g in generator):
        if len(generator) != n_images:
            raise ValueError(f"generator is a list of {len(generator)} torch.Generators for {n_images} images; give "
                             f"one per image (prompts x num_images_per_prompt) or a single one")
        return
    raise TypeError(f"generator must be None, a torch.Generator or a list of them (one per image), got "
                    f"{type(generator).__name__} {generator!r}")


def _is_size(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_resolutions(resolutions, grids: list[Size]) -> Optional[list[Size]]:
    if resolutions is None:
        return None
    if _is_size(resolutions) or (isinstance(resolutions, tuple) and len(resolutions) == 2
                                 and all(_is_size(r) for r in resolutions)):
        resolutions = [resolutions]
    resolutions = checks.sequence(resolutions, "resolutions")
    if not resolutions:
        raise ValueError(f"resolutions is empty; give None (all) or grid sizes of {grids}")
    out = []
    for r in resolutions:
        if not (_is_size(r) or (isinstance(r, (tuple, list)) and len(r) == 2 and all(_is_size(v) for v in r))):
            raise TypeError(f"resolutions: each entry must be an int (a square grid) or an (h, w) pair of ints, got {r!r}")
        size = (r, r) if _is_size(r) else tuple(r)
        if size not in grids:
            raise ValueError(f"resolutions: {r!r} is not an attention grid of this generation; its grids (h, w) "
                             f"are {grids}")
        out.append(size)
    return out


@contextlib.contextmanager
def _progress(pipe, progress: Optional[bool]):
    """Temporarily show (True) or hide (False) the pipeline's tqdm bar; ``None`` changes nothing."""
    if progress is None:
        yield
        return
    missing = object()
    old = getattr(pipe, "_progress_bar_config", missing)
    pipe.set_progress_bar_config(**{**({} if old is missing else old), "disable": not progress})
    try:
        yield
    finally:
        if old is missing:
            del pipe._progress_bar_config
        else:
            pipe._progress_bar_config = old
