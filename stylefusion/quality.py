"""Input quality of a judged segment: face size, sharpness and exposure of its crops.

The record (:class:`Quality`) is read by the decision rule (:func:`stylefusion.decision.decide`),
the feature cache and the model card, none of which needs OpenCV; only *measuring* a segment
(:func:`frame_quality`, :func:`measure_quality`) does, so ``cv2`` is imported there and this module
stays importable without it. The limits a segment is held to, and the reasons it fails them, are
the rule's: :data:`stylefusion.decision.QUALITY_REASONS` and
:func:`stylefusion.decision.quality_reasons`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from stylefusion.faces import FaceTrack

#: Side of the grey image the sharpness is measured on: the crop is resized to it first, so the
#: figure describes detail at the scale of facial features whatever the crop size (a 256-px crop
#: of a 40-px face is an upscaled blur, which a full-resolution Laplacian would call blurry even
#: when the source is sharp; ``face_too_small`` covers small faces).
SHARPNESS_SIDE = 64


@dataclass(frozen=True)
class Quality:
    """How well one segment shows its face; medians over the frames where a face was found.

    face_px: side of the face box in source pixels (the square crop box divided by 1 + margin);
    sharpness: variance of the Laplacian over variance of the grey crop at 64x64 (:func:`frame_quality`);
    brightness: mean luma (0-255) of the face region (the crop's central 1 / (1 + margin)).
    """

    face_px: float
    sharpness: float
    brightness: float

    def to_dict(self) -> dict[str, float]:
        return {"face_px": round(float(self.face_px), 3), "sharpness": round(float(self.sharpness), 3),
                "brightness": round(float(self.brightness), 3)}

    def as_array(self) -> np.ndarray:
        """``[3]`` float32 (face_px, sharpness, brightness): how the feature cache stores it."""
        return np.array([self.face_px, self.sharpness, self.brightness], np.float32)

    @classmethod
    def from_array(cls, values: Any) -> "Quality | None":
        """Inverse of :meth:`as_array`; None for a missing (NaN) measurement."""
        v = np.asarray(values, np.float64).reshape(-1)
        if len(v) != 3 or not np.isfinite(v).all():
            return None
        return cls(float(v[0]), float(v[1]), float(v[2]))


def frame_quality(crop: np.ndarray, face_margin: float) -> tuple[float, float]:
    """(sharpness, brightness) of one ``[S, S, 3]`` uint8 RGB crop.

    Sharpness is the variance of the Laplacian divided by the variance of the image, both on the
    grey crop at :data:`SHARPNESS_SIDE`: the ratio does not change when the exposure scales the
    pixel values, so a dark face is ``too_dark``, not also ``too_blurry`` (measured on the carphone
    clip: 0.38 sharp, 0.45 at 22% exposure, 0.05 after a Gaussian blur of 1.5 px).
    """
    import cv2

    grey = cv2.cvtColor(np.ascontiguousarray(crop), cv2.COLOR_RGB2GRAY)
    small = cv2.resize(grey, (SHARPNESS_SIDE, SHARPNESS_SIDE), interpolation=cv2.INTER_AREA).astype(np.float32)
    spread = float(small.var())
    sharpness = float(cv2.Laplacian(small, cv2.CV_32F).var()) / spread if spread > 1e-6 else 0.0
    s = grey.shape[0]
    inner = int(round(s / (1.0 + face_margin)))
    a = (s - inner) // 2
    brightness = float(grey[a:a + inner, a:a + inner].mean())
    return sharpness, brightness


def measure_quality(track: "FaceTrack", face_margin: float) -> Quality:
    """The :class:`Quality` of a segment's crops (``FaceTrack``: crops, boxes in source pixels).

    Frames that fell back to a centre crop are left out unless every frame did. Repeated crops of
    a padded segment count once.
    """
    keep = ~np.asarray(track.fallback, bool)
    if not keep.any():
        keep = np.ones(len(track.fallback), bool)
    _, first = np.unique(np.asarray(track.source_indices)[keep], return_index=True)
    idx = np.flatnonzero(keep)[first]
    boxes = np.asarray(track.boxes, np.float64)[idx]
    face_px = float(np.median(np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]))) / (1.0 + face_margin)
    per_frame = np.array([frame_quality(track.crops[i], face_margin) for i in idx])
    return Quality(face_px, float(np.median(per_frame[:, 0])), float(np.median(per_frame[:, 1])))


__all__ = ["Quality", "SHARPNESS_SIDE", "frame_quality", "measure_quality"]
