"""Winograd F(4x4, 3x3) convolution for the style encoder's 3x3 stride-1 convolutions on the CPU.

Why: on a CPU the pSp encoder is almost all 3x3 convolutions (about 30 of its 36 GMAC per face at
the level we use), and oneDNN already runs them near the cores' peak on AVX2 machines, where it has
no Winograd kernels (NNPACK, which has them, fails to start on many virtual CPUs). The minimal
filtering algorithm (Lavin & Gray, *Fast Algorithms for Convolutional Neural Networks*, CVPR 2016)
computes each 4x4 output tile from a 6x6 input tile with 36 multiplications per channel pair
instead of 144, so 4x fewer multiply-adds, at the price of three cheap linear transforms:

    Y = A^T [ (G g G^T) ⊙ (B^T d B) ] A      (per tile, summed over input channels)

Here the element-wise product summed over channels is one batched matrix multiply
(36 matrices of [tiles, C_in] @ [C_in, C_out]), which BLAS runs at full speed, and the transforms
are small matrix products on channels-last data. Measured on 2 AVX2 cores
(``benchmarks/bench_conv.py``, table in ``benchmarks/README.md``): about 2.2x faster than oneDNN's
direct convolution for 256 and 512 channels (4 faces per pass), 1.3-1.4x for 128, and 3x slower
for 64 channels on 128x128 maps (the transforms are memory-bound there), hence
:data:`MIN_CHANNELS`.

Accuracy: F(4x4, 3x3) with the interpolation points 0, ±1, ±2 is the usual choice for float32; a
layer's relative error is about 1e-5 (direct convolution: about 2e-6), and the encoder's level-9
latent stays within 1e-4 relative of the direct computation (asserted by tests and the benchmark).

:class:`WinogradConv2d` is an ``nn.Conv2d`` (same parameters, same state-dict keys) that takes
this path only where it pays and is safe: CPU, float32, no autograd (inference), 3x3, stride 1,
padding 1, no dilation or groups, ``in_channels >= min_channels``. Everywhere else, GPUs included
(cuDNN picks its own algorithms), it is exactly ``nn.Conv2d``. The transformed weights (4x the
size of the 3x3 weights: 434 MB for the full encoder) are computed on first use and
cached; the cache follows in-place updates and moves of the weight.
"""

from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import nn

#: Fewest input channels for which the Winograd path is taken by default (measured crossover).
MIN_CHANNELS = 128

# Transform matrices of F(4x4, 3x3), interpolation points 0, 1, -1, 2, -2 and infinity.
_BT = ((4, 0, -5, 0, 1, 0),
       (0, -4, -4, 1, 1, 0),
       (0, 4, -4, -1, 1, 0),
       (0, -2, -1, 2, 1, 0),
       (0, 2, -1, -2, 1, 0),
       (0, 4, 0, -5, 0, 1))
_G = ((1 / 4, 0, 0),
      (-1 / 6, -1 / 6, -1 / 6),
      (-1 / 6, 1 / 6, -1 / 6),
      (1 / 24, 1 / 12, 1 / 6),
      (1 / 24, -1 / 12, 1 / 6),
      (0, 0, 1))
_AT = ((1, 1, 1, 1, 1, 0),
       (0, 1, -1, 2, -2, 0),
       (0, 1, 1, 4, 4, 0),
       (0, 1, -1, 8, -8, 1))
TILE = 4  # output tile side; the input tile is TILE + 2


def _matrix(rows, like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(rows, dtype=like.dtype, device=like.device)


def transform_weight(weight: torch.Tensor) -> torch.Tensor:
    """``[C_out, C_in, 3, 3]`` filters → ``[36, C_in, C_out]`` Winograd-domain filters ``G g G^T``.

    Computed in float64 and rounded once, so the cached filters carry no extra rounding error.
    """
    if weight.ndim != 4 or weight.shape[2:] != (3, 3):
        raise ValueError(f"expected 3x3 filters [C_out, C_in, 3, 3], got {list(weight.shape)}")
    w = weight.detach().to(torch.float64)
    g = _matrix(_G, w)
    u = torch.einsum("ak,oikl,bl->abio", g, w, g)  # [6, 6, C_in, C_out]
    return u.reshape(36, weight.shape[1], weight.shape[0]).to(weight.dtype).contiguous()


def winograd_conv3x3(x: torch.Tensor, u: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``conv2d(x, w, bias, stride=1, padding=1)`` with ``u = transform_weight(w)``.

    Args:
        x: ``[N, C_in, H, W]``, any memory format (channels-last avoids one copy).
        u: ``[36, C_in, C_out]`` from :func:`transform_weight`.
        bias: optional ``[C_out]``.

    Returns:
        ``[N, C_out, H, W]`` in channels-last memory format.
    """
    n, c, h, w = x.shape
    if u.shape[:2] != (36, c):
        raise ValueError(f"transformed filters {list(u.shape)} do not take {c} input channels")
    c_out = u.shape[2]
    th, tw = -(-h // TILE), -(-w // TILE)
    bt, at = _matrix(_BT, x), _matrix(_AT, x)
    # Zero-padded NHWC input covering th x tw overlapping 6x6 tiles (1 pixel of "same" padding).
    xp = F.pad(x.permute(0, 2, 3, 1), (0, 0, 1, TILE * tw + 1 - w, 1, TILE * th + 1 - h))
    tiles = xp.unfold(1, 6, TILE).unfold(2, 6, TILE)  # [N, th, tw, C, 6, 6], a view
    m = n * th * tw * c
    d = tiles.permute(4, 5, 0, 1, 2, 3).reshape(6, 6 * m)  # the one gather copy
    # V = B^T d B, one axis at a time: [6, 6, N*th*tw, C].
    v = torch.matmul(bt, (bt @ d).view(6, 6, m))
    # Sum over input channels, for each of the 36 Winograd points: [36, tiles, C_out].
    prod = torch.bmm(v.view(36, n * th * tw, c), u)
    # Y = A^T M A, one axis at a time: [4, 4, N, th, tw, C_out].
    y = torch.matmul(at, (at @ prod.view(6, -1)).view(4, 6, -1))
    y = y.view(TILE, TILE, n, th, tw, c_out).permute(2, 3, 0, 4, 1, 5)
    y = y.reshape(n, TILE * th, TILE * tw, c_out)
    if TILE * th != h or TILE * tw != w:
        y = y[:, :h, :w].contiguous()
    if bias is not None:
        y = y + bias
    return y.permute(0, 3, 1, 2)  # NCHW shape, channels-last strides


class WinogradConv2d(nn.Conv2d):
    """``nn.Conv2d`` that runs 3x3 stride-1 inference on the CPU with :func:`winograd_conv3x3`.

    Attributes:
        winograd: set False to always use ``nn.Conv2d``'s own path (``StyleEncoder.set_winograd``).
        min_channels: fewest input channels for the fast path (:data:`MIN_CHANNELS`).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.winograd = True
        self.min_channels = MIN_CHANNELS
        self._u: torch.Tensor | None = None
        self._u_key: tuple | None = None

    def _fast_path(self, x: torch.Tensor) -> bool:
        return (self.winograd and x.device.type == "cpu" and x.dtype == torch.float32
                and self.weight.dtype == torch.float32 and not torch.is_grad_enabled()
                and self.kernel_size == (3, 3) and self.stride == (1, 1) and self.padding == (1, 1)
                and self.dilation == (1, 1) and self.groups == 1 and self.padding_mode == "zeros"
                and self.in_channels >= self.min_channels and x.ndim == 4)

    def transformed_weight(self) -> torch.Tensor:
        """The cached ``[36, C_in, C_out]`` filters, recomputed when the weight has changed."""
        wt = self.weight
        # Tensor._version (private but stable) counts in-place updates: an optimiser step or
        # load_state_dict into the same storage invalidates the cache.
        key = (wt.data_ptr(), wt._version, wt.device, wt.dtype, tuple(wt.shape))
        if self._u is None or self._u_key != key:
            self._u = transform_weight(wt)
            self._u_key = key
        return self._u

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._fast_path(x):
            return winograd_conv3x3(x, self.transformed_weight(), self.bias)
        return super().forward(x)

    def _apply(self, fn, recurse=True):
        self._u, self._u_key = None, None  # .to() / .half() / .cuda(): drop the cached filters
        return super()._apply(fn, recurse)
