"""What the style latents of a video look like: style flow and a 2-D projection.

One place for these computations, used by the detector (per-frame ``style_flow`` in the result),
the app (the style-pattern plot) and the research figures (the report's temporal and 2-D style
patterns). numpy only, so the app does not need scikit-learn.
"""

from __future__ import annotations

import numpy as np


def style_flow(style: np.ndarray) -> np.ndarray:
    """L2 distance of each frame's style latent to the previous frame's, for one video.

    Args:
        style: ``[T, ...]`` latents (anything after the frame axis is flattened).

    Returns:
        ``[T]`` float64 distances; the first frame's is 0, so the flow stays aligned with the frames.
    """
    x = np.asarray(style, dtype=np.float64)
    return _flow(x.reshape(1, x.shape[0], -1))[0]


def batched_style_flow(style: np.ndarray) -> np.ndarray:
    """``[N, T, ...]`` latents of N videos → ``[N, T]`` style flow (first frame 0)."""
    return _flow(np.asarray(style, dtype=np.float64))


def _flow(x: np.ndarray) -> np.ndarray:
    flat = x.reshape(x.shape[0], x.shape[1], -1)
    out = np.zeros(flat.shape[:2])
    if flat.shape[1] > 1:
        out[:, 1:] = np.linalg.norm(flat[:, 1:] - flat[:, :-1], axis=-1)
    return out


def pca2(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project rows of ``x`` on their first two principal components.

    Centred SVD with deterministic signs (each component's largest-magnitude loading is positive),
    so the same data gives the same picture in the app and in the figures.

    Returns:
        ``([N, 2] coordinates, [2] explained-variance ratios)``; zeros where there are fewer than two
        rows or no variance.
    """
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    if len(x) < 2:
        return np.zeros((len(x), 2)), np.zeros(2)
    x = x - x.mean(axis=0, keepdims=True)
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    comps = vt[:2].copy()
    comps *= np.sign(comps[np.arange(len(comps)), np.abs(comps).argmax(axis=1)])[:, None]
    proj = x @ comps.T
    if proj.shape[1] < 2:
        proj = np.pad(proj, ((0, 0), (0, 2 - proj.shape[1])))
    var = s**2
    ratio = var[:2] / var.sum() if var.sum() > 0 else np.zeros(min(2, len(var)))
    return proj, np.pad(ratio, (0, 2 - len(ratio)))
