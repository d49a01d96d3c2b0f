"""The SD3 / SD3.5 family (MMDiT), described whole (generation and attention): joint attention over the
sequence ``[image | text]``; 16-channel noise, sizes multiples of the VAE factor x the patch size.

Every ``transformer_blocks.i.attn`` runs one softmax over the image tokens and the text tokens together. The
text part is ``[CLIP | T5]``: 77 CLIP positions (CLIP-L and CLIP-G token by token, concatenated along the
channels, start token at 0), then ``max_sequence_length`` T5 positions (zero rows, 256 by default, when the
pipeline has no T5). A word has tokens in both parts; see :class:`SD3Family` for which ones a map uses. SD3.5's extra
image-only ``attn2`` layers (dual attention) do not see the text and are not traced.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from captum_diffusion.attention.families import AttentionFamily, PatchGrids, image_text_attention


class SD3TracingProcessor:
    """Computes what diffusers' ``JointAttnProcessor2_0`` computes (the same ``scaled_dot_product_attention``
    call, so the image is unchanged) and adds the image queries' attention over the text keys to the trace."""

    def __init__(self, trace, original):
        self.trace = trace
        self.original = original

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, *args, **kwargs):
        size = None if encoder_hidden_states is None else self.trace.grid(hidden_states.shape[1])
        if size is None:
            return self.original(attn, hidden_states, encoder_hidden_states, attention_mask, *args, **kwargs)
        if attention_mask is not None:
            raise ValueError("SD3 joint attention with an attention mask is not traced (diffusers' SD3 passes none)")
        residual = hidden_states
        batch = hidden_states.shape[0]

        def heads(x):  # (batch, n, heads * d) -> (batch, heads, n, d)
            return x.view(batch, -1, attn.heads, x.shape[-1] // attn.heads).transpose(1, 2)

        query, key = heads(attn.to_q(hidden_states)), heads(attn.to_k(hidden_states))
        value = heads(attn.to_v(hidden_states))
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        text_query = heads(attn.add_q_proj(encoder_hidden_states))
        text_key = heads(attn.add_k_proj(encoder_hidden_states))
        text_value = heads(attn.add_v_proj(encoder_hidden_states))
        if attn.norm_added_q is not None:
            text_query = attn.norm_added_q(text_query)
        if attn.norm_added_k is not None:
            text_key = attn.norm_added_k(text_key)
        n_image = query.shape[2]
        query = torch.cat([query, text_query], dim=2)  # the joint sequence [image | text]
        key = torch.cat([key, text_key], dim=2)
        value = torch.cat([value, text_value], dim=2)
        rows = self.trace.rows(batch)
        q, k = query[rows], key[rows]
        self.trace.add(image_text_attention(q[:, :, :n_image], k[:, :, n_image:], k, query.shape[-1] ** -0.5,
                                            self.trace.text_softmax), size, batch)

        hidden_states = F.scaled_dot_product_attention(query, key, value, dropout_p=0.0, is_causal=False)
        hidden_states = hidden_states.transpose(1, 2).reshape(batch, -1, attn.heads * query.shape[-1])
        hidden_states = hidden_states.to(query.dtype)
        n = residual.shape[1]
        hidden_states, encoder_hidden_states = hidden_states[:, :n], hidden_states[:, n:]
        if not attn.context_pre_only:
            encoder_hidden_states = attn.to_add_out(encoder_hidden_states)
        hidden_states = attn.to_out[1](attn.to_out[0](hidden_states))
        return hidden_states, encoder_hidden_states


class SD3Family(PatchGrids, AttentionFamily):
    """``StableDiffusion3Pipeline`` and friends (``SD3Transformer2DModel``).

    Text encoders: ``"clip"`` (positions 0..76) and ``"t5"`` (77 onwards, when the pipeline has T5). By
    default a word's map sums its tokens in both, DAAM's own rule (a word's map is the attention to all its
    tokens) applied to a word that has tokens in two encoders: both are keys of the same softmax, so their sum
    is the attention the image gives the word whichever encoder the model reads it from, with no guess about
    how a given checkpoint splits it, and it stays meaningful when T5 is dropped (then only CLIP's are there).
    ``DAAM(pipe, text_encoder="clip")`` or ``"t5"`` maps one part.
    """

    name = "sd3"
    pipeline_classes = ("StableDiffusion3Pipeline",)
    t5_tokenizer = "tokenizer_3"
    text_key_kinds = ("CLIP", "T5")  # [CLIP-L | CLIP-G] token by token at 0..76, then T5
    plain_processors = frozenset({"JointAttnProcessor2_0"})

    def text_layers(self) -> list[str]:
        names = [key[: -len(".processor")] for key in self.denoiser.attn_processors]
        return [n for n in names if getattr(self.denoiser.get_submodule(n), "add_k_proj", None) is not None]

    def tracing_processor(self, trace, original):
        return SD3TracingProcessor(trace, original)

    def extra_call(self, kwargs: dict) -> bool:
        return kwargs.get("skip_layers") is not None  # skip-layer guidance's third pass, with blocks left out
