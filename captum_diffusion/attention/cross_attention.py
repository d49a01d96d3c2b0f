"""Cross-attention families, each described whole (generation and attention): the image attends to the text in
separate ``attn2`` layers whose keys are the text only, so their softmax rows already sum to 1 over the text.

- ``unet``: diffusers' ``UNet2DConditionModel`` (SD 1.x / 2.x / XL), CLIP text (77 positions, start token at
  0), attention at every UNet level: grids the latent halved down the levels.
- ``pixart``: ``PixArtTransformer2DModel`` (PixArt-α / Σ): one grid (latent / patch), T5 text
  (``max_sequence_length`` positions, padding masked out by the pipeline's attention mask).
"""
from __future__ import annotations

import torch

from captum_diffusion.attention.families import AttentionFamily, PatchGrids, Size, call_input, grid_ladder

# diffusers processors that compute plain softmax(QK^T * scale) V attention, which CrossAttentionProcessor reproduces
PLAIN_CROSS_ATTENTION = frozenset({"AttnProcessor", "AttnProcessor2_0", "SlicedAttnProcessor", "XFormersAttnProcessor",
                                   "AttnProcessorNPU"})


class CrossAttentionProcessor:
    """A diffusers attention processor that computes ``AttnProcessor``'s output and adds the attention
    probabilities to a trace (``DAAMTrace``); layers or steps the trace skips go to ``original`` untouched."""

    def __init__(self, trace, original):
        self.trace = trace
        self.original = original

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None):
        length = hidden_states.shape[1] if hidden_states.ndim == 3 else hidden_states.shape[2] * hidden_states.shape[3]
        size = None if encoder_hidden_states is None else self.trace.grid(length)
        if size is None:
            extra = {} if temb is None else {"temb": temb}
            return self.original(attn, hidden_states, encoder_hidden_states=encoder_hidden_states,
                                 attention_mask=attention_mask, **extra)
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch, channel, height * width).transpose(1, 2)
        batch, key_length, _ = encoder_hidden_states.shape
        attention_mask = attn.prepare_attention_mask(attention_mask, key_length, batch)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        query = attn.to_q(hidden_states)
        if attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        query = attn.head_to_batch_dim(query)
        key = attn.head_to_batch_dim(attn.to_k(encoder_hidden_states))
        value = attn.head_to_batch_dim(attn.to_v(encoder_hidden_states))
        if getattr(attn, "norm_q", None) is not None:  # per-head norms act on the last (head) dimension
            query = attn.norm_q(query)
        if getattr(attn, "norm_k", None) is not None:
            key = attn.norm_k(key)
        probs = attn.get_attention_scores(query, key, attention_mask)  # (batch * heads, image, text)
        self.trace.add(probs.reshape(batch, attn.heads, probs.shape[1], probs.shape[2]), size)
        hidden_states = attn.batch_to_head_dim(torch.bmm(probs, value))
        hidden_states = attn.to_out[1](attn.to_out[0](hidden_states))
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch, channel, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor


class CrossAttentionFamily(AttentionFamily):
    """Shared by the UNet and PixArt families: ``attn2`` layers, :class:`CrossAttentionProcessor`."""

    plain_processors = PLAIN_CROSS_ATTENTION

    def text_layers(self) -> list[str]:
        names = [key[: -len(".processor")] for key in self.denoiser.attn_processors]
        return [n for n in names if getattr(self.denoiser.get_submodule(n), "is_cross_attention", False)]

    def tracing_processor(self, trace, original):
        return CrossAttentionProcessor(trace, original)


class UNetFamily(CrossAttentionFamily):
    """Stable Diffusion 1.x / 2.x / XL and any pipeline with a ``unet``: CLIP text at positions 0..76 (SDXL's
    second CLIP shares them), attention at every UNet level."""

    name = "unet"
    denoiser_attribute = "unet"
    text_key_kinds = ("CLIP",)
    text_argument_position = 2  # unet(sample, timestep, encoder_hidden_states)
    size_explanation = "diffusers' UNet pipelines check multiples of 8, and of its vae_scale_factor"

    def size_multiple(self) -> int | None:
        """Multiples of 8 (diffusers' Stable Diffusion pipelines refuse others in ``check_inputs``) and of the VAE
        factor."""
        import math

        return math.lcm(8, self.vae_scale_factor or 8)

    @classmethod
    def matches(cls, pipeline) -> bool:
        return getattr(pipeline, "unet", None) is not None

    @property
    def depth(self) -> int:
        return len(getattr(self.denoiser.config, "down_block_types", ())) or 8

    def grids(self, height: int, width: int) -> list[Size]:
        scale = self.vae_scale_factor or 8
        return grid_ladder((height // scale, width // scale), self.depth)

    def call_grids(self, args, kwargs) -> list[Size]:
        sample = call_input(args, kwargs, "sample")
        return grid_ladder(tuple(sample.shape[-2:]), self.depth)


class PixArtFamily(PatchGrids, CrossAttentionFamily):
    """``PixArtSigmaPipeline`` / ``PixArtAlphaPipeline``: DiT with cross-attention to T5."""

    name = "pixart"
    pipeline_classes = ("PixArtSigmaPipeline", "PixArtAlphaPipeline")
    t5_tokenizer = "tokenizer"
    text_key_kinds = ("T5",)
    #: resolution binning would generate at another size than the seeded latents were drawn for (then resize),
    #: and caption cleaning rewrites the prompt (lower case, no URLs, ...), so a word game would no longer play
    #: the words it lists
    call_keywords = {"use_resolution_binning": False, "clean_caption": False}

    def tokenized_prompt(self, prompt: str) -> str:
        """Lower-cased and stripped: PixArt's ``_text_preprocessing`` without caption cleaning."""
        return prompt.lower().strip()

    def check_call(self, call: dict) -> None:
        if call.get("clean_caption"):
            raise ValueError("clean_caption=True rewrites the prompt before T5 reads it (drops words and "
                             "punctuation), so its words no longer match the prompt's; attention maps need "
                             "clean_caption=False (their default)")
        super().check_call(call)
