"""Content path: the PyTorchVideo ``slow_r50`` trunk (blocks 0-4) with a global average pool.

Network: the "Slow" pathway ResNet-50 of Feichtenhofer et al., *SlowFast Networks for Video
Recognition* (ICCV 2019), as released in PyTorchVideo's model zoo (hub entry ``slow_r50``,
checkpoint ``kinetics/SLOW_8x8_R50.pyth``, Apache-2.0). The module names below reproduce the
upstream ``model_state`` names so that converting the checkpoint is a filter, not a rename; the
code itself is ours (layout and formulas: ``shared/spec/upstream-checkpoints.md`` §2).

The Kinetics head (``blocks.5``) is dropped: its AvgPool3d(8,7,7) cannot run on the report's
16x112x112 clips (spec §2.4), and replacing only its projection is not a global mean. The
feature is the mean of the ``blocks.4`` map over T, H and W.

``width`` scales every channel count (64 gives the real network and a ``width * 32`` = 2048-d
feature); ``width=8, depths=(1, 1, 1, 1)`` is the ``tiny`` preset used by tests.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from stylefusion.config import StyleFusionConfig
from stylefusion.errors import CheckpointError
from stylefusion.models import match_state_dict, zero_batch_counters

logger = logging.getLogger(__name__)

#: Upstream ``model_state`` prefix of the Kinetics-400 head, which we do not use.
HEAD_PREFIX = "blocks.5."

# Per stage (res2..res5): temporal kernel of conv_a and spatial stride of the first block.
# Temporal convolutions only in res4/res5 is what makes this the "Slow" pathway (spec §2.2).
_STAGE_TEMPORAL_KERNEL = (1, 1, 3, 3)
_STAGE_SPATIAL_STRIDE = (1, 2, 2, 2)


def _bn(channels: int) -> nn.BatchNorm3d:
    return nn.BatchNorm3d(channels, eps=1e-5, momentum=0.1)


class Stem(nn.Module):
    """``blocks.0``: 1x7x7 conv (stride 1,2,2) + BN + ReLU + 1x3x3 max-pool (stride 1,2,2)."""

    def __init__(self, out_channels: int):
        super().__init__()
        self.conv = nn.Conv3d(3, out_channels, (1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False)
        self.norm = _bn(out_channels)
        self.activation = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.activation(self.norm(self.conv(x))))  # [B,C,T,H/4,W/4]


class Bottleneck(nn.Module):
    """``branch2``: kt x1x1 conv -> 1x3x3 conv (carries the spatial stride) -> 1x1x1 conv.

    No activation after ``norm_c``: the ReLU comes after the residual sum (in :class:`ResBlock`).
    """

    def __init__(self, dim_in: int, inner: int, dim_out: int, temporal_kernel: int, stride: int):
        super().__init__()
        self.conv_a = nn.Conv3d(dim_in, inner, (temporal_kernel, 1, 1),
                                padding=(temporal_kernel // 2, 0, 0), bias=False)
        self.norm_a = _bn(inner)
        self.act_a = nn.ReLU(inplace=True)
        self.conv_b = nn.Conv3d(inner, inner, (1, 3, 3), stride=(1, stride, stride),
                                padding=(0, 1, 1), bias=False)
        self.norm_b = _bn(inner)
        self.act_b = nn.ReLU(inplace=True)
        self.conv_c = nn.Conv3d(inner, dim_out, 1, bias=False)
        self.norm_c = _bn(dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act_a(self.norm_a(self.conv_a(x)))
        x = self.act_b(self.norm_b(self.conv_b(x)))  # spatial size / stride
        return self.norm_c(self.conv_c(x))


class ResBlock(nn.Module):
    """ReLU(shortcut(x) + branch2(x)); the shortcut is a projection only in a stage's first block."""

    def __init__(self, dim_in: int, inner: int, dim_out: int, temporal_kernel: int, stride: int,
                 project: bool):
        super().__init__()
        if project:
            self.branch1_conv = nn.Conv3d(dim_in, dim_out, 1, stride=(1, stride, stride), bias=False)
            self.branch1_norm = _bn(dim_out)
        else:
            self.branch1_conv = None
            self.branch1_norm = None
        self.branch2 = Bottleneck(dim_in, inner, dim_out, temporal_kernel, stride)
        self.activation = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.branch1_conv is None else self.branch1_norm(self.branch1_conv(x))
        return self.activation(shortcut + self.branch2(x))


class ResStage(nn.Module):
    """``blocks.{1..4}``: a ``res_blocks`` list, the first block projecting and striding."""

    def __init__(self, dim_in: int, inner: int, dim_out: int, depth: int, temporal_kernel: int,
                 stride: int):
        super().__init__()
        self.res_blocks = nn.ModuleList(
            ResBlock(dim_in if j == 0 else dim_out, inner, dim_out, temporal_kernel,
                     stride if j == 0 else 1, project=j == 0)
            for j in range(depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.res_blocks:
            x = block(x)
        return x


class SlowR50Trunk(nn.Module):
    """slow_r50 without its head: ``[B,3,T,H,W]`` normalised clip -> ``[B, width*32]`` feature.

    Args:
        width: stem channels; stage widths are (1, 2, 4, 8) x width inside and 4x that out.
            64 is the released network.
        depths: ResBlocks per stage (3, 4, 6, 3 for ResNet-50).

    Input: RGB in [0, 1] normalised with mean 0.45 / std 0.225 (the config's ``content_mean``/
    ``content_std``). The trunk is fully convolutional; no temporal down-sampling, so T is kept
    until the final mean.
    """

    def __init__(self, width: int = 64, depths: Sequence[int] = (3, 4, 6, 3)):
        super().__init__()
        if len(depths) != 4 or min(depths) < 1:
            raise ValueError(f"depths={tuple(depths)} must be 4 positive integers")
        self.width = width
        self.depths = tuple(depths)
        stages: list[nn.Module] = [Stem(width)]
        dim_in = width
        for s, depth in enumerate(self.depths):
            inner = width * 2 ** s
            dim_out = inner * 4
            stages.append(ResStage(dim_in, inner, dim_out, depth, _STAGE_TEMPORAL_KERNEL[s],
                                   _STAGE_SPATIAL_STRIDE[s]))
            dim_in = dim_out
        self.blocks = nn.ModuleList(stages)
        self.out_dim = dim_in  # width * 32

    @classmethod
    def from_config(cls, cfg: StyleFusionConfig) -> "SlowR50Trunk":
        """The trunk a StyleFusion config describes (``content_width``, ``content_depths``)."""
        return cls(width=cfg.content_width, depths=cfg.content_depths)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``[B,3,T,H,W]`` -> ``blocks.4`` map ``[B, width*32, T, H/32, W/32]``."""
        if x.ndim != 5 or x.shape[1] != 3:
            raise ValueError(f"expected a clip batch [B,3,T,H,W], got {list(x.shape)}")
        for block in self.blocks:
            x = block(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x).mean(dim=(2, 3, 4))  # [B, width*32]


def checkpoint_filter_fn(state_dict: Mapping[str, Any], model: SlowR50Trunk,
                         source: str = "slow_r50 checkpoint") -> dict[str, torch.Tensor]:
    """Turn a PyTorchVideo/PySlowFast ``slow_r50`` checkpoint into our trunk's state dict.

    Accepts the raw ``.pyth`` dict (``model_state`` plus ``epoch``/``cfg``/``optimizer_state``,
    only ``model_state`` is read), a bare ``model_state``, a ``module.``-prefixed one (saved from
    DataParallel), or a dict already in our format (returned after the shape check).

    Dropped: the Kinetics head ``blocks.5.*`` and the upstream ``num_batches_tracked`` counters
    (optional upstream). Our BatchNorms keep their counter so the result loads strictly into
    plain ``nn.BatchNorm3d``; it is always written as 0 (see
    :func:`stylefusion.models.zero_batch_counters`).

    Raises:
        CheckpointError: not a state dict, or any key unknown/missing or of the wrong shape
            (named in the message with both shapes).
    """
    if not isinstance(state_dict, Mapping):
        raise CheckpointError(f"{source}: expected a dict of tensors, got {type(state_dict).__name__}")
    if "model_state" in state_dict:
        state_dict = state_dict["model_state"]
        if not isinstance(state_dict, Mapping):
            raise CheckpointError(f"{source}: 'model_state' is {type(state_dict).__name__}, not a dict")
    own = model.state_dict()
    if set(state_dict) == set(own):  # already converted: nothing to drop or rename
        return match_state_dict(state_dict, model, source)

    out: dict[str, Any] = {}
    for key, value in state_dict.items():
        if not isinstance(key, str):
            raise CheckpointError(f"{source}: key {key!r} is not a string")
        if key.startswith("module."):
            key = key[len("module."):]
        if key.startswith(HEAD_PREFIX) or key.endswith("num_batches_tracked"):
            continue
        out[key] = value
    counters = [k for k in own if k.endswith("num_batches_tracked")]
    out = match_state_dict(out, model, source, optional=counters)
    logger.debug("%s: kept %d of %d keys", source, len(out), len(state_dict))
    return zero_batch_counters(out, model)
