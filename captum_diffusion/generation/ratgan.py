"""A RATLIP-style generator: recurrent affine transformations (RAT) plus shuffle attention, in plain torch.

``RATGenerator(noise (B, z_dim), sentence (B, cond_dim)) -> images (B, 3, S, S)`` in [-1, 1]. A 4x4 seed from
the noise, then upsampling blocks (DF-GAN's residual block: norm, affine, LeakyReLU, 3x3 conv, twice). Every
affine layer takes its per-channel scale and shift from the hidden state of one LSTM cell that reads the sentence
embedding at every step and carries its state from layer to layer, its initial state computed from the noise
(RAT-GAN / RATLIP). A shuffle-attention module (SA-Net: channel and spatial gating per group, then a channel
shuffle) follows every second block, as RATLIP puts one between every two RAT blocks. Nothing mixes the images
of a batch (GroupNorm, no BatchNorm), so an image does not depend on the rest of its batch.

It saves and loads like a hub checkpoint: ``save_pretrained(dir)`` writes ``config.json`` and
``model.safetensors``; ``RATGenerator.from_pretrained(dir)`` reads them.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from captum_diffusion import checks

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


class ShuffleAttention(nn.Module):
    """SA-Net's shuffle attention on ``(B, C, H, W)``: channels split into ``groups``; in each group one half is
    gated by its global average (channel attention), the other by its GroupNorm-ed self (spatial attention);
    then channels are shuffled across the two halves. ``C`` must be divisible by ``2 * groups``."""

    def __init__(self, channels: int, groups: int = 4):
        super().__init__()
        if channels % (2 * groups):
            raise ValueError(f"channels ({channels}) must be divisible by 2 * groups ({2 * groups})")
        half = channels // (2 * groups)
        self.groups = groups
        self.channel_weight = nn.Parameter(torch.zeros(1, half, 1, 1))
        self.channel_bias = nn.Parameter(torch.ones(1, half, 1, 1))
        self.spatial_weight = nn.Parameter(torch.zeros(1, half, 1, 1))
        self.spatial_bias = nn.Parameter(torch.ones(1, half, 1, 1))
        self.norm = nn.GroupNorm(half, half)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        x = x.reshape(b * self.groups, c // self.groups, h, w)
        x_channel, x_spatial = x.chunk(2, dim=1)
        gate = x_channel.mean((2, 3), keepdim=True) * self.channel_weight + self.channel_bias
        x_channel = x_channel * torch.sigmoid(gate)
        x_spatial = x_spatial * torch.sigmoid(self.norm(x_spatial) * self.spatial_weight + self.spatial_bias)
        x = torch.cat([x_channel, x_spatial], dim=1).reshape(b, c, h, w)
        return x.reshape(b, 2, c // 2, h, w).transpose(1, 2).reshape(b, c, h, w)  # channel shuffle


def _group_norm(channels: int) -> nn.GroupNorm:
    """Per-image normalisation without parameters (GroupNorm: nothing mixes the images of a batch)."""
    return nn.GroupNorm(min(8, channels), channels, affine=False)


class _RATBlock(nn.Module):
    """Upsample x2, then ``shortcut(h) + conv(lrelu(affine(norm(conv(lrelu(affine(norm(h))))))))``: conditional
    normalisation, whose per-channel scale and shift come from two successive LSTM states. (Without the
    normalisation, DF-GAN's plain affine, activations grew until the tanh output saturated white and the
    generator stopped learning within 200 steps here.)"""

    def __init__(self, in_channels: int, out_channels: int, hidden: int):
        super().__init__()
        self.affine = nn.ModuleList([nn.Linear(hidden, 2 * in_channels), nn.Linear(hidden, 2 * out_channels)])
        for layer in self.affine:  # start as the identity affine (scale 1, shift 0), as DF-GAN does
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
            layer.bias.data[: layer.out_features // 2] = 1.0
        self.norms = nn.ModuleList([_group_norm(in_channels), _group_norm(out_channels)])
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    @staticmethod
    def _modulate(h: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        scale, shift = params[:, :, None, None].chunk(2, dim=1)
        return F.leaky_relu(h * scale + shift, 0.2)

    def forward(self, h: torch.Tensor, states: list[torch.Tensor]) -> torch.Tensor:
        h = F.interpolate(h, scale_factor=2, mode="nearest")
        res = self.conv1(self._modulate(self.norms[0](h), self.affine[0](states[0])))
        res = self.conv2(self._modulate(self.norms[1](res), self.affine[1](states[1])))
        return self.shortcut(h) + res


class RATGenerator(nn.Module):
    """``forward(noise (B, z_dim), sentence (B, cond_dim)) -> images (B, 3, S, S)`` in [-1, 1] (tanh).

    Parameters
    ----------
    cond_dim : int
        Size of the sentence embedding (the CLIP text projection).
    z_dim : int
        Size of the noise.
    channels : sequence of int
        Feature channels at 4x4, 8x8, ...; the image side is ``4 * 2 ** (len(channels) - 1)`` pixels.
    lstm_hidden : int
        Hidden size of the LSTM cell shared by all affine layers (RATLIP's "64 hidden").
    shuffle_groups : int
        Groups of the shuffle attention after every second block (0: none).
    """

    def __init__(self, cond_dim: int = 64, z_dim: int = 32, channels=(128, 128, 64, 32, 16), lstm_hidden: int = 64,
                 shuffle_groups: int = 4):
        super().__init__()
        cond_dim = checks.positive_int(cond_dim, "cond_dim")
        z_dim = checks.positive_int(z_dim, "z_dim")
        lstm_hidden = checks.positive_int(lstm_hidden, "lstm_hidden")
        if isinstance(channels, (str, bytes)) or len(channels) < 2:
            raise ValueError(f"channels must list at least two channel counts (4x4 and 8x8), got {channels!r}")
        channels = [checks.positive_int(c, "channels[i]") for c in channels]
        shuffle_groups = checks.int_at_least(shuffle_groups, 0, "shuffle_groups")
        self.config = dict(cond_dim=cond_dim, z_dim=z_dim, channels=list(channels), lstm_hidden=lstm_hidden,
                           shuffle_groups=shuffle_groups)
        self.cond_dim, self.z_dim = cond_dim, z_dim
        self.image_size = 4 * 2 ** (len(channels) - 1)
        self.seed_layer = nn.Linear(z_dim, channels[0] * 16)
        self.initial_state = nn.Linear(z_dim, 2 * lstm_hidden)
        self.lstm = nn.LSTMCell(cond_dim, lstm_hidden)
        self.blocks = nn.ModuleList(_RATBlock(a, b, lstm_hidden) for a, b in zip(channels[:-1], channels[1:]))
        self.attention = nn.ModuleDict({
            str(i): ShuffleAttention(channels[i + 1], shuffle_groups)
            for i in range(1, len(self.blocks), 2) if shuffle_groups})
        self.to_rgb = nn.Conv2d(channels[-1], 3, 3, padding=1)

    @property
    def dtype(self) -> torch.dtype:
        return self.to_rgb.weight.dtype

    def forward(self, noise: torch.Tensor, sentence: torch.Tensor) -> torch.Tensor:
        noise, sentence = noise.to(self.dtype), sentence.to(self.dtype)
        h_state, c_state = self.initial_state(noise).chunk(2, dim=1)
        h = self.seed_layer(noise).view(noise.shape[0], -1, 4, 4)
        for i, block in enumerate(self.blocks):
            states = []
            for _ in range(2):  # one LSTM step per affine layer
                h_state, c_state = self.lstm(sentence, (h_state, c_state))
                states.append(h_state)
            h = block(h, states)
            if str(i) in self.attention:
                h = self.attention[str(i)](h)
        return torch.tanh(self.to_rgb(F.leaky_relu(h, 0.2)))

    def save_pretrained(self, directory) -> None:
        """Write ``config.json`` and ``model.safetensors`` (float32) into ``directory`` (created if needed)."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / CONFIG_NAME).write_text(json.dumps(self.config, indent=2) + "\n")
        save_file({k: v.detach().float().contiguous().cpu() for k, v in self.state_dict().items()},
                  str(directory / WEIGHTS_NAME))

    @classmethod
    def from_pretrained(cls, directory, device=None, dtype=None) -> "RATGenerator":
        """Load a generator written by ``save_pretrained``; in eval mode on ``device`` (default CPU) in ``dtype``
        (default float32). Raises ``FileNotFoundError`` when ``directory`` lacks either file."""
        from safetensors.torch import load_file

        checks.placement(device, dtype)
        directory = Path(directory)
        for name in (CONFIG_NAME, WEIGHTS_NAME):
            if not (directory / name).is_file():
                raise FileNotFoundError(f"{directory / name} not found (a RATGenerator directory holds "
                                        f"{CONFIG_NAME} and {WEIGHTS_NAME})")
        model = cls(**json.loads((directory / CONFIG_NAME).read_text()))
        model.load_state_dict(load_file(str(directory / WEIGHTS_NAME)))
        return model.to(device=device or "cpu", dtype=dtype or torch.float32).eval()
