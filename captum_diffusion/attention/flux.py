"""The FLUX.1 family, described whole (generation and attention): 16-channel noise packed 2x2 into 64-channel
tokens, embedded guidance, joint attention over the sequence ``[text | image]`` (text first), T5 text only.

Double-stream blocks (``transformer_blocks.i.attn``) project text and image separately and attend jointly;
single-stream blocks (``single_transformer_blocks.i.attn``, 38 of FLUX.1's 57) get the already concatenated
``[text | image]`` sequence, so their processor learns the text length from the denoiser call. Both kinds are
traced. CLIP only gives FLUX its pooled vector, so words are read off T5's ``max_sequence_length`` positions.
FLUX.1-dev has no classifier-free guidance (its guidance is an input of the model); ``true_cfg_scale > 1``
with a negative prompt runs the negative prompt as a second call per step, which the trace recognises.
"""
from __future__ import annotations

import torch

from captum_diffusion.attention.families import AttentionFamily, Size, call_input, image_text_attention


class FluxTracingProcessor:
    """Computes what diffusers' ``FluxAttnProcessor`` computes (same projections, norms, rotary embedding and
    ``dispatch_attention_fn`` call, so the image is unchanged) and adds the image queries' attention over the
    text keys to the trace, for double-stream (text given separately) and single-stream (text inside
    ``hidden_states``) blocks alike."""

    def __init__(self, trace, original):
        self.trace = trace
        self.original = original

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, image_rotary_emb=None):
        joint_input = encoder_hidden_states is None  # single-stream: hidden_states is [text | image]
        n_text = self.trace.text_length if joint_input else encoder_hidden_states.shape[1]
        size = self.trace.grid(hidden_states.shape[1] - (n_text if joint_input else 0))
        if size is None:
            return self.original(attn, hidden_states, encoder_hidden_states, attention_mask, image_rotary_emb)
        if attention_mask is not None:
            raise ValueError("FLUX attention with an attention mask is not traced (FluxPipeline passes none)")
        from diffusers.models.attention_dispatch import dispatch_attention_fn
        from diffusers.models.embeddings import apply_rotary_emb

        def heads(x):  # (batch, n, heads * d) -> (batch, n, heads, d), FLUX's layout
            return x.unflatten(-1, (-1, attn.head_dim))

        query = attn.norm_q(heads(attn.to_q(hidden_states)))
        key = attn.norm_k(heads(attn.to_k(hidden_states)))
        value = heads(attn.to_v(hidden_states))
        if not joint_input:
            query = torch.cat([attn.norm_added_q(heads(attn.add_q_proj(encoder_hidden_states))), query], dim=1)
            key = torch.cat([attn.norm_added_k(heads(attn.add_k_proj(encoder_hidden_states))), key], dim=1)
            value = torch.cat([heads(attn.add_v_proj(encoder_hidden_states)), value], dim=1)
        if image_rotary_emb is not None:
            query = apply_rotary_emb(query, image_rotary_emb, sequence_dim=1)
            key = apply_rotary_emb(key, image_rotary_emb, sequence_dim=1)
        rows = self.trace.rows(query.shape[0])
        q, k = query[rows].transpose(1, 2), key[rows].transpose(1, 2)  # (batch, heads, n, d)
        self.trace.add(image_text_attention(q[:, :, n_text:], k[:, :, :n_text], k, query.shape[-1] ** -0.5,
                                            self.trace.text_softmax), size, query.shape[0])

        hidden_states = dispatch_attention_fn(query, key, value, attn_mask=attention_mask,
                                              backend=self.original._attention_backend,
                                              parallel_config=self.original._parallel_config)
        hidden_states = hidden_states.flatten(2, 3).to(query.dtype)
        if joint_input:
            return hidden_states
        encoder_hidden_states, hidden_states = hidden_states.split_with_sizes(
            [n_text, hidden_states.shape[1] - n_text], dim=1)
        hidden_states = attn.to_out[1](attn.to_out[0](hidden_states.contiguous()))
        encoder_hidden_states = attn.to_add_out(encoder_hidden_states.contiguous())
        return hidden_states, encoder_hidden_states


class FluxFamily(AttentionFamily):
    """``FluxPipeline`` and friends (``FluxTransformer2DModel``): T5 text, ``[text | image]``."""

    name = "flux"
    pipeline_classes = ("FluxPipeline",)
    t5_tokenizer = "tokenizer_2"
    text_key_kinds = ("T5",)  # CLIP only gives a pooled vector
    size_explanation = "its vae_scale_factor x 2 for FLUX's 2x2 latent packing"
    plain_processors = frozenset({"FluxAttnProcessor"})
    separate_uncond_calls = True

    def size_multiple(self) -> int | None:
        scale = self.vae_scale_factor
        return None if scale is None else scale * 2  # the pipeline packs 2x2 latent patches into one token

    def default_sample_size(self) -> int | None:
        sample = getattr(self.pipeline, "default_sample_size", None)
        return sample if isinstance(sample, int) else None

    def noise_shape(self, height: int, width: int) -> tuple[int, int, int] | None:
        """``in_channels / 4`` (16) channels at ``2 * (height // (2 s))`` x ``2 * (width // (2 s))``: the pipeline
        rounds the latent down to even sides, then :meth:`pack_latents` packs it 2x2."""
        multiple = self.size_multiple()
        if multiple is None:
            return None
        return self.denoiser.config.in_channels // 4, 2 * (height // multiple), 2 * (width // multiple)

    @staticmethod
    def pack_latents(noise: torch.Tensor) -> torch.Tensor:
        """FLUX's 2x2 packing: ``(n, C, h, w)`` -> ``(n, h/2 * w/2, 4 C)``, tokens in row-major order over the
        ``(h/2, w/2)`` grid, each token's channels ordered (C, dy, dx)."""
        n, channels, height, width = noise.shape
        patches = noise.view(n, channels, height // 2, 2, width // 2, 2).permute(0, 2, 4, 1, 3, 5)
        return patches.reshape(n, (height // 2) * (width // 2), channels * 4)

    def text_layers(self) -> list[str]:
        return [key[: -len(".processor")] for key in self.denoiser.attn_processors
                if key.startswith(("transformer_blocks.", "single_transformer_blocks."))]

    def check_layer(self, name, module, processor) -> None:
        super().check_layer(name, module, processor)
        if getattr(module, "fused_projections", False):
            raise ValueError(f"layer {name} has fused QKV projections; call pipe.transformer.unfuse_qkv_projections() "
                             f"before tracing its attention")

    def tracing_processor(self, trace, original):
        return FluxTracingProcessor(trace, original)

    def grids(self, height: int, width: int) -> list[Size]:
        multiple = self.size_multiple()
        return [(height // multiple, width // multiple)]

    def call_grids(self, args, kwargs) -> list[Size]:
        ids = call_input(args, kwargs, "img_ids", 4)  # (n, 3) rows (0, row, column)
        ids = ids.reshape(-1, ids.shape[-1])
        return [(int(ids[:, 1].max()) + 1, int(ids[:, 2].max()) + 1)]
