"""The inputs each network expects, built from the config that travels with its weights.

As open_clip hands back the transform with the model, a StyleFusion checkpoint's config fixes
its preprocessing: these functions turn a video's face crops (``[T, S, S, 3]`` uint8 RGB, as
:class:`~stylefusion.faces.FaceCropper` cuts them) into exactly the tensors the weights were made
with. The detector and the benchmark's reference pipeline both call them, so there is one
definition of what "the report's preprocessing" means.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from stylefusion.config import StyleFusionConfig


def _to_float(crops: np.ndarray | torch.Tensor, device: torch.device | str | None) -> torch.Tensor:
    """``[N, S, S, 3]`` uint8 → ``[N, 3, S, S]`` float32 in [0, 1] on ``device``."""
    x = crops if isinstance(crops, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(crops))
    if device is not None:
        x = x.to(device, non_blocking=True)
    return x.permute(0, 3, 1, 2).float().div_(255.0)


def _normalise(x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - m) / s


def style_inputs(crops: np.ndarray | torch.Tensor, config: StyleFusionConfig,
                 device: torch.device | str | None = None) -> torch.Tensor:
    """Face crops → the pSp encoder's input: ``[N, 3, S, S]`` float32, mean/std of the config.

    pSp normalises with 0.5/0.5 (to [-1, 1]) at ``face_size`` (256) pixels. The result is in
    channels-last memory layout, which oneDNN and cuDNN run faster for these 2-D convolutions.
    """
    x = _normalise(_to_float(crops, device), config.style_mean, config.style_std)
    return x.contiguous(memory_format=torch.channels_last)


def content_frames(crops: np.ndarray | torch.Tensor, config: StyleFusionConfig,
                   device: torch.device | str | None = None) -> torch.Tensor:
    """Face crops → ``[N, 3, s, s]`` float32 frames for the content path (``s = content_size``).

    Resized with antialiased bilinear interpolation (112 px for slow_r50) and normalised with the
    Kinetics mean/std of the config (0.45/0.225).
    """
    x = _to_float(crops, device)
    x = F.interpolate(x, size=(config.content_size, config.content_size), mode="bilinear",
                      align_corners=False, antialias=True)
    return _normalise(x, config.content_mean, config.content_std)


def content_clips(crops: np.ndarray | torch.Tensor, config: StyleFusionConfig,
                  device: torch.device | str | None = None) -> torch.Tensor:
    """The T crops of one video → ``[num_clips, 3, clip_len, s, s]``: consecutive 16-frame clips.

    Raises:
        ValueError: the number of crops is not ``num_clips * clip_len``.
    """
    c = config
    if len(crops) != c.num_clips * c.clip_len:
        raise ValueError(f"{len(crops)} crops cannot be cut into {c.num_clips} clips of {c.clip_len} frames")
    x = content_frames(crops, c, device)
    return x.view(c.num_clips, c.clip_len, 3, c.content_size, c.content_size).transpose(1, 2)
