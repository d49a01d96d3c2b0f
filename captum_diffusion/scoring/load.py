"""``load_scorer(spec)``: one string picks an image-text scorer (for scripts and command lines).

- ``"open_clip:NAME:PRETRAINED"`` -> ``OpenCLIPSimilarity(NAME, PRETRAINED)``, e.g.
  ``"open_clip:ViT-B-16-plus-240:laion400m_e32"`` (Gupta & Kanoria's scorer). ``PRETRAINED`` is an open_clip tag
  or a checkpoint path (everything after the second colon, so a path may hold colons).
- ``"open_clip:hf-hub:ORG/REPO"`` / ``"open_clip:local-dir:PATH"`` -> open_clip models whose weights come with the
  name (no ``PRETRAINED``).
- anything else -> ``CLIPSimilarity(spec)``: a transformers hub id or local directory
  (``"openai/clip-vit-base-patch32"``).
"""
from __future__ import annotations

OPEN_CLIP_PREFIX = "open_clip:"
_SCHEMAS = ("hf-hub:", "local-dir:")


def parse_scorer_spec(spec: str) -> tuple[str, str, str | None]:
    """``("open_clip", name, pretrained)`` or ``("transformers", spec, None)``; ``ValueError`` naming ``spec`` for an
    open_clip spec without a name, with an empty ``PRETRAINED``, or without one where the name needs it."""
    if not isinstance(spec, str):
        raise TypeError(f"scorer spec must be a str ('open_clip:NAME:PRETRAINED' or a transformers CLIP id / "
                        f"directory), got {type(spec).__name__}")
    if not spec.strip():
        raise ValueError("scorer spec is empty: give 'open_clip:NAME:PRETRAINED' or a transformers CLIP id / directory")
    if not spec.startswith(OPEN_CLIP_PREFIX):
        return "transformers", spec, None
    rest = spec[len(OPEN_CLIP_PREFIX):]
    if rest.startswith(_SCHEMAS):
        if not rest.split(":", 1)[1].strip():
            raise ValueError(f"scorer spec {spec!r} names no repository / directory after {rest.split(':')[0]!r}")
        return "open_clip", rest, None
    name, colon, pretrained = rest.partition(":")
    if not name.strip():
        raise ValueError(f"scorer spec {spec!r} has no open_clip model name: write 'open_clip:NAME:PRETRAINED', e.g. "
                         "'open_clip:ViT-B-16-plus-240:laion400m_e32'")
    if not pretrained.strip():
        raise ValueError(f"scorer spec {spec!r} has {'an empty' if colon else 'no'} PRETRAINED: write "
                         f"'open_clip:{name}:TAG' with a tag from open_clip.list_pretrained_tags_by_model({name!r}) "
                         "or a checkpoint path (a name alone would mean random weights)")
    return "open_clip", name, pretrained


def load_scorer(spec: str, *, device=None, dtype=None, text_template: str | None = None):
    """The scorer ``spec`` names (module docstring): an ``OpenCLIPSimilarity`` or a ``CLIPSimilarity``.

    Parameters
    ----------
    spec : str
        ``"open_clip:NAME:PRETRAINED"``, ``"open_clip:hf-hub:ORG/REPO"``, ``"open_clip:local-dir:PATH"``, or a
        transformers CLIP hub id / local directory.
    device, dtype : torch.device or str, torch.dtype, optional
        Where / in what dtype the model runs (default: CPU, unchanged dtype).
    text_template : str, optional
        The caption a single word is embedded in (default: the scorer's, ``"{}"``).

    Returns
    -------
    OpenCLIPSimilarity or CLIPSimilarity
        The loaded scorer.
    """
    kind, name, pretrained = parse_scorer_spec(spec)
    options = {"device": device, "dtype": dtype}
    if text_template is not None:
        options["text_template"] = text_template
    if kind == "open_clip":
        from captum_diffusion.scoring.open_clip import OpenCLIPSimilarity

        return OpenCLIPSimilarity(name, pretrained, **options)
    from captum_diffusion.scoring.clip import CLIPSimilarity

    return CLIPSimilarity(name, **options)
