"""Style path: the pSp GradualStyleEncoder (IR-SE-50 backbone), run only for the levels we use.

Network: Richardson et al., *Encoding in Style: a StyleGAN Encoder for Image-to-Image Translation*
(pixel2style2pixel, CVPR 2021, MIT licence), checkpoint ``psp_ffhq_encode.pt``; its backbone is
the IR-SE-50 of ArcFace (Deng et al., CVPR 2019). Module names reproduce the upstream
``encoder.*`` names (minus the prefix) so the converter only filters; the code is ours (layout
and formulas: ``shared/spec/upstream-checkpoints.md`` §1).

The encoder maps a 256x256 face to 18 StyleGAN2 W+ latents. The report uses level 9 only, which
needs the whole backbone and both lateral convs but only one of the 18 style blocks (the spec's
403-key subset, §1.7). So :class:`StyleEncoder` builds and runs exactly what its ``levels``
need: fine levels (7-17) need p1 (both lateral convs), middle levels (3-6) need p2
(``latlayer1``), coarse levels (0-2) read c3 directly (no lateral conv).

``width`` scales every channel count (64 is the real network, style vectors of ``width * 8`` =
512); ``width=8, units=(1, 1, 1, 1)`` is the ``tiny`` preset used by tests.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from stylefusion.config import N_STYLE_LEVELS, StyleFusionConfig
from stylefusion.errors import CheckpointError
from stylefusion.models import match_state_dict, zero_batch_counters
from stylefusion.models.winograd import WinogradConv2d

logger = logging.getLogger(__name__)

#: Levels 0..COARSE_END-1 read c3, COARSE_END..MIDDLE_END-1 read p2, the rest read p1
#: (pSp's ``coarse_ind = 3``, ``middle_ind = 7``).
COARSE_END = 3
MIDDLE_END = 7

#: Levels the ``full`` helper runs: all of pSp's 18 (1024px StyleGAN2).
ALL_LEVELS = tuple(range(N_STYLE_LEVELS))

_STYLE_KEY = re.compile(r"styles\.(\d+)\.")


def level_group(level: int) -> str:
    """``"coarse"``, ``"middle"`` or ``"fine"``: which feature map a style level reads."""
    if not 0 <= level < N_STYLE_LEVELS:
        raise ValueError(f"style level {level} is not in [0, {N_STYLE_LEVELS - 1}]")
    return "coarse" if level < COARSE_END else "middle" if level < MIDDLE_END else "fine"


class SEModule(nn.Module):
    """Squeeze-and-excitation: channel gates from a pooled 1x1-conv bottleneck (no biases)."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(1, channels // reduction)  # max(): tiny widths would otherwise get 0 channels
        self.fc1 = nn.Conv2d(channels, hidden, 1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(hidden, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = x.mean(dim=(2, 3), keepdim=True)  # [B,C,1,1]
        gate = torch.sigmoid(self.fc2(self.relu(self.fc1(gate))))
        return x * gate


class _Subsample(nn.Module):
    """Parameter-free shortcut of pSp's same-width units: every ``stride``-th pixel."""

    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.stride == 1 else x[:, :, :: self.stride, :: self.stride]


class BottleneckIRSE(nn.Module):
    """One ``body.{i}`` unit: ``res_layer(x) + shortcut_layer(x)``, no activation after the sum.

    ``res_layer`` is BN -> 3x3 conv -> PReLU -> 3x3 conv (stride) -> BN -> SE ("pre-activation"
    style, so the Sequential indices 0..5 are the upstream key indices). The shortcut is a 1x1
    conv + BN when the channel count changes, else a parameter-free 1x1 max-pool with the unit's
    stride (identity at stride 1, every other pixel at stride 2).
    """

    def __init__(self, in_channels: int, depth: int, stride: int):
        super().__init__()
        if in_channels == depth:
            # MaxPool2d(1, stride) is the identity at stride 1 and keeps every other pixel at
            # stride 2; the slice costs nothing where the pooling op was 2.5% of the encoder's time.
            self.shortcut_layer: nn.Module = _Subsample(stride)
        else:
            self.shortcut_layer = nn.Sequential(
                nn.Conv2d(in_channels, depth, 1, stride, bias=False), nn.BatchNorm2d(depth))
        # WinogradConv2d is nn.Conv2d (same keys) with a faster CPU inference path (winograd.py).
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            WinogradConv2d(in_channels, depth, 3, 1, 1, bias=False),
            nn.PReLU(depth),
            WinogradConv2d(depth, depth, 3, stride, 1, bias=False),
            nn.BatchNorm2d(depth),
            SEModule(depth, 16),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


class EqualLinear(nn.Module):
    """StyleGAN2's equalised-learning-rate linear layer, as used in pSp's style blocks (lr_mul=1).

    The stored ``weight`` is the RAW upstream parameter ``[out, in]``; the equalisation scale
    ``1/sqrt(in)`` is applied here at run time, once: ``y = x @ (weight / sqrt(in)).T + bias``.
    Why not fold it into the weight at conversion: our checkpoint then holds the upstream values
    bit for bit (traceable to the source file), and a layer trained further by us keeps pSp's
    learning-rate equalisation.
    """

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim))
        self.bias = nn.Parameter(torch.zeros(out_dim))
        self.scale = 1.0 / math.sqrt(in_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.scale, self.bias)


class GradualStyleBlock(nn.Module):
    """``styles.{s}``: log2(spatial) stride-2 3x3 convs (LeakyReLU 0.01) to 1x1, then EqualLinear.

    Convs sit at the even indices of ``convs`` (LeakyReLUs, parameter-free, at the odd ones), as
    upstream, so keys are ``convs.0``, ``convs.2``, ...
    """

    def __init__(self, channels: int, spatial: int):
        super().__init__()
        n_convs = int(math.log2(spatial))
        if spatial < 2 or 2 ** n_convs != spatial:
            raise ValueError(f"style block input side {spatial} must be a power of two >= 2")
        layers: list[nn.Module] = []
        for _ in range(n_convs):
            layers += [nn.Conv2d(channels, channels, 3, 2, 1), nn.LeakyReLU(0.01)]
        self.convs = nn.Sequential(*layers)
        self.linear = EqualLinear(channels, channels)
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.convs(x)  # [B,C,1,1]
        return self.linear(x.reshape(-1, self.channels))  # [B,C]


class StyleEncoder(nn.Module):
    """pSp GradualStyleEncoder restricted to ``levels``: ``[B,3,S,S]`` -> ``[B, len(levels), width*8]``.

    Args:
        width: channels of ``input_layer``; the four stages have (1, 2, 4, 8) x width channels
            and the style vectors 8 x width (64 -> 512, the released network).
        units: bottleneck units per stage (3, 4, 14, 3 for IR-50), stored flat as ``body.{i}``.
        levels: which of the 18 style levels to compute, in increasing order. Only the style
            blocks and lateral convs these need are built (and so expected in a checkpoint).
        input_size: side S of the square input (256 for pSp). It fixes how many stride-2 convs
            each style block has, so that block maps reach exactly 1x1.

    Input: RGB face crops in [0, 1] normalised with mean 0.5 / std 0.5 (range [-1, 1]).

    Buffer ``latent_avg`` ``[18, width*8]`` (persistent): pSp's ``start_from_latent_avg`` offset,
    the StyleGAN2 average latent, added to each level's output. All 18 rows are stored even when
    fewer levels run: 36 kB for the full size, and the checkpoint then holds what the upstream
    file held, whatever levels a later config selects.
    """

    def __init__(self, width: int = 64, units: Sequence[int] = (3, 4, 14, 3),
                 levels: Sequence[int] = (9,), input_size: int = 256):
        super().__init__()
        levels = tuple(int(level) for level in levels)
        if not levels or list(levels) != sorted(set(levels)):
            raise ValueError(f"levels={levels} must be distinct and increasing")
        groups = {level_group(level) for level in levels}
        if len(units) != 4 or min(units) < 1:
            raise ValueError(f"units={tuple(units)} must be 4 positive integers")
        if input_size < 32 or input_size & (input_size - 1):
            raise ValueError(f"input_size={input_size} must be a power of two >= 32")
        self.width, self.units, self.levels, self.input_size = width, tuple(units), levels, input_size
        self.style_dim = width * 8

        self.input_layer = nn.Sequential(
            nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.PReLU(width))
        body: list[nn.Module] = []
        in_channels = width
        self._taps: list[int] = []  # body indices whose outputs are c1, c2, c3
        for stage, n_units in enumerate(self.units):
            depth = width * 2 ** stage
            for u in range(n_units):
                body.append(BottleneckIRSE(in_channels, depth, 2 if u == 0 else 1))
                in_channels = depth
            if stage >= 1:
                self._taps.append(len(body) - 1)
        self.body = nn.Sequential(*body)

        # Lateral 1x1 convs of the FPN: only what the configured levels read.
        dim = self.style_dim
        self.latlayer1 = nn.Conv2d(width * 4, dim, 1) if groups & {"middle", "fine"} else None
        self.latlayer2 = nn.Conv2d(width * 2, dim, 1) if "fine" in groups else None
        spatial = {"coarse": input_size // 16, "middle": input_size // 8, "fine": input_size // 4}
        self.styles = nn.ModuleDict(
            {str(level): GradualStyleBlock(dim, spatial[level_group(level)]) for level in levels})
        self.register_buffer("latent_avg", torch.zeros(N_STYLE_LEVELS, dim), persistent=True)

    @classmethod
    def from_config(cls, cfg: StyleFusionConfig) -> "StyleEncoder":
        """The encoder a StyleFusion config describes (``style_width/units/levels``, ``face_size``)."""
        return cls(width=cfg.style_width, units=cfg.style_units, levels=cfg.style_levels,
                   input_size=cfg.face_size)

    @classmethod
    def full(cls, width: int = 64, units: Sequence[int] = (3, 4, 14, 3),
             input_size: int = 256) -> "StyleEncoder":
        """All 18 levels, i.e. the whole upstream encoder (reference for the reduced ones)."""
        return cls(width=width, units=units, levels=ALL_LEVELS, input_size=input_size)

    def set_winograd(self, enabled: bool, min_channels: int | None = None) -> "StyleEncoder":
        """Turn the Winograd CPU path of the 3x3 convolutions on or off (``min_channels``: from how
        many input channels it is taken). Off gives oneDNN's direct convolution, as upstream runs."""
        for m in self.modules():
            if isinstance(m, WinogradConv2d):
                m.winograd = enabled
                if min_channels is not None:
                    m.min_channels = min_channels
        return self

    def forward_features(self, x: torch.Tensor, stem_batch: int | None = None) -> dict[str, torch.Tensor]:
        """Backbone and FPN: the maps the configured levels read (``coarse``/``middle``/``fine``).

        ``stem_batch``: run the input layer and the first two stages (64 and 128 channels on
        128x128 and 64x64 maps) on this many faces at a time, and the rest on the whole batch.
        Why: on a CPU the large early maps stay in cache only for one or two faces, while the
        later stages read 9-38 MB of Winograd filters per convolution and want more faces per
        read (full encoder, 2 cores: 318 ms per face with 1 then 4, against 339 with 1 throughout).
        """
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[2] != self.input_size or x.shape[3] != self.input_size:
            raise ValueError(f"expected faces [B,3,{self.input_size},{self.input_size}], got {list(x.shape)}")
        stem_end = self._taps[0] + 1  # body units up to and including c1
        step = max(1, len(x) if not stem_batch or stem_batch >= len(x) else stem_batch)
        parts = []
        for start in range(0, max(1, len(x)), step):  # an empty batch still runs once
            h = self.input_layer(x[start:start + step])  # [b,w,S,S]
            for unit in self.body[:stem_end]:
                h = unit(h)
            parts.append(h)
        c1 = parts[0] if len(parts) == 1 else torch.cat(parts)  # [B,2w,S/4,S/4]
        x = c1
        taps = [c1]
        for i in range(stem_end, len(self.body)):
            x = self.body[i](x)
            if i in self._taps:
                taps.append(x)
        c2, c3 = taps[1:]  # [B,4w,S/8,S/8], [B,8w,S/16,S/16]
        maps = {"coarse": c3}
        if self.latlayer1 is not None:
            p2 = _upsample_add(c3, self.latlayer1(c2))  # [B,8w,S/8,S/8]
            maps["middle"] = p2
            if self.latlayer2 is not None:
                maps["fine"] = _upsample_add(p2, self.latlayer2(c1))  # [B,8w,S/4,S/4]
        return maps

    def forward(self, x: torch.Tensor, stem_batch: int | None = None) -> torch.Tensor:
        maps = self.forward_features(x, stem_batch)
        codes = torch.stack(
            [self.styles[str(level)](maps[level_group(level)]) for level in self.levels], dim=1)
        return codes + self.latent_avg[list(self.levels)]  # [B, n_levels, 8w]


def _upsample_add(top: torch.Tensor, lateral: torch.Tensor) -> torch.Tensor:
    """FPN merge: ``top`` resized bilinearly (align_corners=True, as pSp) to ``lateral``'s size, plus it."""
    return F.interpolate(top, size=lateral.shape[-2:], mode="bilinear", align_corners=True) + lateral


def _latent_avg(value: Any, dim: int, source: str) -> torch.Tensor:
    """Normalise pSp's ``latent_avg`` ([D], [18,D] or [1,18,D]) to ``[18, D]``."""
    if not isinstance(value, torch.Tensor) or not value.is_floating_point():
        raise CheckpointError(f"{source}: latent_avg is {type(value).__name__}, not a float tensor")
    shape = tuple(value.shape)
    if shape == (dim,):
        return value.reshape(1, dim).expand(N_STYLE_LEVELS, dim).clone()
    if shape in ((N_STYLE_LEVELS, dim), (1, N_STYLE_LEVELS, dim)):
        return value.reshape(N_STYLE_LEVELS, dim).clone()
    raise CheckpointError(f"{source}: latent_avg has shape {list(shape)}; expected [{dim}], "
                          f"[{N_STYLE_LEVELS}, {dim}] or [1, {N_STYLE_LEVELS}, {dim}]")


def checkpoint_filter_fn(checkpoint: Mapping[str, Any], model: StyleEncoder,
                         source: str = "pSp checkpoint") -> dict[str, torch.Tensor]:
    """Turn a pSp ``.pt`` checkpoint into the state dict of ``model`` (for its configured levels).

    Accepts the raw pSp dict (``state_dict`` with ``encoder.*`` and ``decoder.*`` keys, ``opts``,
    top-level ``latent_avg``) or a dict already in our format (returned after the shape check).
    Keeps ``encoder.*`` (prefix stripped; a ``module.`` prefix is stripped too); drops the
    StyleGAN2 ``decoder.*``, the style blocks and lateral convs the model does not build, and the
    upstream ``num_batches_tracked`` counters (ours are written as 0). ``latent_avg`` becomes the
    ``[18, D]`` buffer. EqualLinear weights are copied raw (the model applies 1/sqrt(in)).

    ``opts`` is read for two things only: a non-GradualStyleEncoder / ``learn_in_w`` model is
    refused (other outputs), and ``start_from_latent_avg=False`` gives a zero ``latent_avg``
    (upstream then adds nothing). pSp's released ``opts`` predate ``learn_in_w``; absent = False.

    Raises:
        CheckpointError: no ``latent_avg`` (the FFHQ encode model adds it to every code, so
            without it every latent would be off by the average latent), a non-encoder key that is
            not the decoder, any unknown/missing key or wrong shape (named with both shapes).
    """
    if not isinstance(checkpoint, Mapping):
        raise CheckpointError(f"{source}: expected a dict, got {type(checkpoint).__name__}")
    own = model.state_dict()
    if set(checkpoint) == set(own):  # already converted
        return match_state_dict(checkpoint, model, source)

    if "state_dict" in checkpoint:
        state_dict = checkpoint["state_dict"]
        if not isinstance(state_dict, Mapping):
            raise CheckpointError(f"{source}: 'state_dict' is {type(state_dict).__name__}, not a dict")
    elif any(isinstance(k, str) and k.startswith(("encoder.", "module.encoder.")) for k in checkpoint):
        state_dict = {k: v for k, v in checkpoint.items() if k != "latent_avg"}  # a bare pSp state dict
    else:
        raise CheckpointError(f"{source}: not a pSp checkpoint (no 'state_dict' and no 'encoder.*' keys; "
                              f"top-level keys: {sorted(map(str, checkpoint))[:8]})")
    opts = checkpoint.get("opts")
    opts = opts if isinstance(opts, Mapping) else {}
    if opts.get("encoder_type", "GradualStyleEncoder") != "GradualStyleEncoder" or opts.get("learn_in_w"):
        raise CheckpointError(
            f"{source}: encoder_type={opts.get('encoder_type')!r}, learn_in_w={opts.get('learn_in_w')!r}; "
            "only the GradualStyleEncoder with W+ outputs (pSp's encode models) is supported")
    if opts.get("start_from_latent_avg") is False:
        # Trained without the offset: upstream adds nothing, so neither do we (a zero buffer).
        logger.info("%s: start_from_latent_avg=False, latent_avg set to zero", source)
        latent_avg = torch.zeros(N_STYLE_LEVELS, model.style_dim)
    elif checkpoint.get("latent_avg") is None:
        raise CheckpointError(
            f"{source}: has no 'latent_avg'; the pSp FFHQ encoder adds the StyleGAN2 average latent to "
            "its outputs (start_from_latent_avg), so a checkpoint without it cannot give the right codes")
    else:
        latent_avg = _latent_avg(checkpoint["latent_avg"], model.style_dim, source)

    out: dict[str, Any] = {}
    odd: list[str] = []
    for key, value in state_dict.items():
        if not isinstance(key, str):
            raise CheckpointError(f"{source}: key {key!r} is not a string")
        if key.startswith("module."):
            key = key[len("module."):]
        if key.startswith("decoder."):
            continue
        if not key.startswith("encoder."):
            odd.append(key)
            continue
        key = key[len("encoder."):]
        if key.endswith("num_batches_tracked"):
            continue
        match = _STYLE_KEY.match(key)
        if match and int(match.group(1)) < N_STYLE_LEVELS and int(match.group(1)) not in model.levels:
            continue  # a style level this model does not compute
        if key.startswith("latlayer1.") and model.latlayer1 is None:
            continue
        if key.startswith("latlayer2.") and model.latlayer2 is None:
            continue
        out[key] = value
    if odd:
        raise CheckpointError(f"{source}: keys that are neither encoder.* nor decoder.*: {sorted(odd)[:6]}")
    out["latent_avg"] = latent_avg
    counters = [k for k in own if k.endswith("num_batches_tracked")]
    out = match_state_dict(out, model, source, optional=counters)
    logger.debug("%s: kept %d keys for levels %s", source, len(out), model.levels)
    return zero_batch_counters(out, model)
