"""Typed records that travel between the stages and out to users.

``VideoFeatures`` sits on the feature boundary (what the cache stores, what the head reads);
``DetectionResult`` is what ``StyleFusionDetector.detect`` returns. Every per-frame field is aligned
with ``source_indices``, the index of the frame in the decoded video, so an explanation can always be
mapped back to the video.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch


@dataclass
class VideoFeatures:
    """Everything the fusion head needs for one video, plus the provenance of each frame.

    Shapes (T = config.num_frames, C = config.num_clips):
        content: [C, content_dim] float32, one vector per 16-frame clip.
        style: [T, n_levels, style_dim] float32, one pSp latent per frame and level.
        source_indices: [T] int64; timestamps: [T] float64 seconds;
        boxes: [T, 4] float32 crop boxes (x1, y1, x2, y2) in source pixels;
        probs: [T] float32 MTCNN probability (0 where the frame fell back to a centre crop);
        fallback: [T] bool.
    """

    content: torch.Tensor
    style: torch.Tensor
    source_indices: np.ndarray
    timestamps: np.ndarray
    boxes: np.ndarray
    probs: np.ndarray
    fallback: np.ndarray

    @property
    def face_found_ratio(self) -> float:
        return float(1.0 - self.fallback.mean()) if len(self.fallback) else 0.0


@dataclass
class FrameResult:
    """One sampled frame: where it came from, what was found, and how it weighed in."""

    source_index: int
    timestamp: float
    box: list[float]
    detection_prob: float
    fallback: bool
    style_flow: float  # L2 distance to the previous frame's style vector (0 for the first frame)
    attention: float  # weight of this frame in the style attention (sums to 1 over frames)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source_index": int(self.source_index),
            "timestamp": round(float(self.timestamp), 6),
            "box": [round(float(v), 3) for v in self.box],
            "detection_prob": round(float(self.detection_prob), 6),
            "fallback": bool(self.fallback),
            "style_flow": float(self.style_flow),
            "attention": float(self.attention),
        }


@dataclass
class DetectionResult:
    """The answer for one video.

    ``label`` is one of ``fake``, ``real``, ``uncertain``, ``no_face`` or ``untrained``. When the
    checkpoint's head is untrained ``p_fake`` is None: the number would look like a verdict but mean
    nothing.
    """

    path: str
    label: str
    p_fake: float | None
    threshold: float
    uncertain_margin: float
    face_found_ratio: float
    frames: list[FrameResult]
    timings: dict[str, float]
    checkpoint: dict[str, Any]
    message: str = ""
    video: dict[str, Any] = field(default_factory=dict)
    crops: np.ndarray | None = field(default=None, repr=False)  # [T, S, S, 3] uint8 RGB, if asked
    style_latents: np.ndarray | None = field(default=None, repr=False)  # [T, n_levels*style_dim]

    @property
    def is_verdict(self) -> bool:
        """True when the label says something about the video (fake, real or uncertain)."""
        return self.label in ("fake", "real", "uncertain")

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable report (crops and latents left out)."""
        return {
            "path": self.path,
            "label": self.label,
            "p_fake": None if self.p_fake is None else float(self.p_fake),
            "threshold": float(self.threshold),
            "uncertain_margin": float(self.uncertain_margin),
            "face_found_ratio": float(self.face_found_ratio),
            "message": self.message,
            "video": self.video,
            "checkpoint": self.checkpoint,
            "timings": {k: round(float(v), 4) for k, v in self.timings.items()},
            "frames": [f.to_dict() for f in self.frames],
        }
