"""Self-blended pseudo-fakes: the fake class made from real videos, on the fly during extraction.

Fake training data is the bottleneck (FaceForensics++ and Celeb-DF are gated and forbid commercial
use), and detectors trained on real videos only, with pseudo-fakes made by blending a face with a
transformed copy of itself, now match those trained on fakes across datasets. This module follows
**Self-Blended Images** (Shiohara & Yamasaki, CVPR 2022; parameters read from
github.com/mapooon/SelfBlendedImages, ``src/utils/sbi.py`` and ``src/utils/blend.py``; our own code),
applied to the T face crops of a judged segment (what the extractors read), with two changes for
video:

- **Temporally plausible.** SBI draws a transform per image. A video's pseudo-fake draws *one
  transform per segment* and lets its continuous parameters drift slowly from one draw to a nearby
  one across the T frames (``flicker=False``, the default); the mask follows the face's landmarks,
  smoothed over time. A head trained on per-frame draws would learn "flicker = fake" and nothing
  else; ``flicker=True`` gives per-frame draws as an option (e.g. to augment with both).
- **5 landmarks.** MTCNN (the detector's face finder) gives eyes, nose and mouth corners, not 68/81
  points: the mask is the convex hull of those points extended to brows, cheeks and chin by fixed
  face proportions (:func:`face_hull`), or an ellipse around them (``mask="ellipse"``).

SBI's parameters (at its 256-px crops; mask sizes scale with the crop):

================================  =============================================================
source transform (SBI            RGB shift +-20 (p 0.3), brightness and contrast +-0.1, then one
``get_source_transforms``)       of: down-scale by 2 or 4 (nearest) and back, or sharpen with
                                 alpha 0.2-0.5, lightness 0.5-1.0; applied to the source or to
                                 the target with probability 0.5 each
affine (``randaffine``)          translation x +-3 %, y +-1.5 %, scale 0.95-1/0.95
mask (``get_blend_mask``)        Gaussian blur k1 in 5..25 (odd), values < 1 cut (an erosion),
                                 blur k2 in 5..25 with sigma 5..45; blend ratio from
                                 {0.25, 0.5, 0.75, 1, 1, 1}
hull dilation (Face X-ray's      ours: the hull dilated (or eroded) by -3 %..+8 % of the crop
``random_get_hull`` variants)
================================  =============================================================
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

#: The manifest ``method`` (and the card's wording) of self-blended pseudo-fakes.
METHOD = "self-blend"
#: Appended to a real video's id to name its pseudo-fake's entry.
SUFFIX = ".sbi"
NO_LANDMARKS_REASON = "self-blend: no face landmarks in any judged segment (no face to blend)"


@dataclass(frozen=True)
class SelfBlendSettings:
    """How pseudo-fakes are made; their JSON is part of each pseudo-fake entry's cache key."""

    seed: int = 0
    flicker: bool = False  # per-frame draws (SBI's per-image recipe) instead of one slow drift per segment
    mask: str = "hull"  # "hull" (extended landmark hull) or "ellipse"
    drift: float = 0.25  # how far the parameters drift over a segment, as a share of their range
    blend_ratios: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0, 1.0, 1.0)
    rgb_shift: float = 20.0
    rgb_shift_p: float = 0.3
    brightness: float = 0.1
    contrast: float = 0.1
    downscale: tuple[int, ...] = (2, 4)
    sharpen_alpha: tuple[float, float] = (0.2, 0.5)
    sharpen_lightness: tuple[float, float] = (0.5, 1.0)
    translate: tuple[float, float] = (0.03, 0.015)
    scale: tuple[float, float] = (0.95, 1 / 0.95)
    blur_kernel: tuple[int, int] = (5, 25)
    blur_sigma: tuple[float, float] = (5.0, 45.0)
    dilate: tuple[float, float] = (-0.03, 0.08)
    reference_size: int = 256  # SBI's crop size, at which the kernel sizes above are given
    version: int = 1  # bump when the code changes what the same settings make

    def __post_init__(self) -> None:
        if self.mask not in ("hull", "ellipse"):
            raise ValueError(f"self-blend mask {self.mask!r} must be 'hull' or 'ellipse'")
        if not 0 <= self.drift <= 1:
            raise ValueError(f"self-blend drift {self.drift} must be in [0, 1]")

    def key(self) -> str:
        """Canonical JSON: what the cache compares (other settings: the entry is recomputed)."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True, separators=(",", ":"))


# ----------------------------------------------------------------------------------------------
# Landmarks and masks
# ----------------------------------------------------------------------------------------------
def crop_landmarks(cropper: Any, crops: np.ndarray) -> np.ndarray:
    """MTCNN's 5 landmarks (left eye, right eye, nose, mouth left, mouth right) of the largest face
    in each crop, ``[T, 5, 2]`` in crop pixels, NaN where no face is found."""
    import torch
    from facenet_pytorch.models.utils.detect_face import detect_face

    m = cropper.mtcnn
    size = crops.shape[1]
    out = np.full((len(crops), 5, 2), np.nan, np.float32)
    with torch.inference_mode():
        boxes, points = detect_face(np.ascontiguousarray(crops), max(12.0, 0.3 * size), m.pnet, m.rnet, m.onet,
                                    m.thresholds, m.factor, m.device)
    for i, (b, p) in enumerate(zip(boxes, points)):
        b = np.asarray(b, np.float32).reshape(-1, 5)
        if len(b) == 0:
            continue
        j = int(np.argmax((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])))
        out[i] = np.asarray(p, np.float32).reshape(-1, 5, 2)[j]
    return out


def fill_and_smooth(landmarks: np.ndarray, window: int = 5) -> np.ndarray | None:
    """Missing frames' landmarks interpolated from their neighbours, then a moving average over
    ``window`` frames (the mask follows the face, not the detector's jitter); None if none found."""
    t = len(landmarks)
    ok = ~np.isnan(landmarks).any(axis=(1, 2))
    if not ok.any():
        return None
    idx = np.arange(t)
    flat = landmarks.reshape(t, -1).copy()
    for k in range(flat.shape[1]):
        flat[:, k] = np.interp(idx, idx[ok], flat[ok, k])
    if window > 1 and t > 1:
        pad = window // 2
        padded = np.pad(flat, ((pad, pad), (0, 0)), mode="edge")
        kernel = np.ones(window) / window
        flat = np.stack([np.convolve(padded[:, k], kernel, mode="valid") for k in range(flat.shape[1])], 1)
    return flat.reshape(t, 5, 2).astype(np.float32)


def face_hull(points: np.ndarray) -> np.ndarray:
    """The 5 landmarks extended to the face's outline by typical proportions: brows above the eyes
    (0.45 of the eye-mouth distance), the chin below the mouth (0.55), cheeks beyond the eyes and
    mouth corners (0.35 of the eye distance). ``[N, 2]`` points whose convex hull is the face."""
    le, re, nose, ml, mr = points
    eyes, mouth = (le + re) / 2, (ml + mr) / 2
    down = mouth - eyes
    across = re - le
    d, w = np.linalg.norm(down) + 1e-6, np.linalg.norm(across) + 1e-6
    u, v = down / d, across / w
    pts = [le - 0.45 * d * u - 0.35 * w * v, re - 0.45 * d * u + 0.35 * w * v,
           eyes - 0.6 * d * u,
           le + 0.5 * d * u - 0.45 * w * v, re + 0.5 * d * u + 0.45 * w * v,
           ml + 0.3 * d * u - 0.2 * w * v, mr + 0.3 * d * u + 0.2 * w * v,
           mouth + 0.55 * d * u, nose]
    return np.array(pts, np.float32)


def base_mask(points: np.ndarray, size: int, kind: str) -> np.ndarray:
    """Binary face mask ``[S, S]`` float32 from 5 landmarks."""
    import cv2

    mask = np.zeros((size, size), np.float32)
    hull = face_hull(points)
    if kind == "ellipse":
        (cx, cy), (w, h), angle = cv2.minAreaRect(hull)
        cv2.ellipse(mask, ((cx, cy), (w * 1.05, h * 1.05), angle), 1.0, -1)
    else:
        cv2.fillConvexPoly(mask, cv2.convexHull(np.round(hull).astype(np.int32)), 1.0)
    return mask


# ----------------------------------------------------------------------------------------------
# The transform of one segment
# ----------------------------------------------------------------------------------------------
@dataclass
class _Draw:
    """One draw of SBI's random parameters; continuous ones may drift, discrete ones stay."""

    transform_source: bool
    shift: np.ndarray
    brightness: float
    contrast: float
    degrade: str  # "downscale" or "sharpen"
    down: int
    alpha: float
    lightness: float
    tx: float
    ty: float
    scale: float
    k1: int
    k2: int
    sigma: float
    dilate: float
    ratio: float
    extra: dict[str, float] = field(default_factory=dict)


def _odd(k: float) -> int:
    k = max(1, int(round(k)))
    return k if k % 2 else k + 1


def draw(s: SelfBlendSettings, rng: np.random.Generator) -> _Draw:
    """SBI's random parameters (see the module doc)."""
    u = rng.uniform
    return _Draw(
        transform_source=bool(rng.random() < 0.5),
        shift=(u(-s.rgb_shift, s.rgb_shift, 3) if rng.random() < s.rgb_shift_p else np.zeros(3)),
        brightness=u(-s.brightness, s.brightness), contrast=u(-s.contrast, s.contrast),
        degrade="downscale" if rng.random() < 0.5 else "sharpen", down=int(rng.choice(s.downscale)),
        alpha=u(*s.sharpen_alpha), lightness=u(*s.sharpen_lightness),
        tx=u(-s.translate[0], s.translate[0]), ty=u(-s.translate[1], s.translate[1]), scale=u(*s.scale),
        k1=int(rng.integers(s.blur_kernel[0] // 2, s.blur_kernel[1] // 2 + 1)) * 2 + 1,
        k2=int(rng.integers(s.blur_kernel[0] // 2, s.blur_kernel[1] // 2 + 1)) * 2 + 1,
        sigma=u(*s.blur_sigma), dilate=u(*s.dilate), ratio=float(rng.choice(s.blend_ratios)))


_CONTINUOUS = ("brightness", "contrast", "alpha", "lightness", "tx", "ty", "scale", "sigma", "dilate")


def drift_path(start: _Draw, s: SelfBlendSettings, rng: np.random.Generator, n: int) -> list[_Draw]:
    """``n`` draws moving linearly from ``start`` towards a nearby point: each continuous
    parameter moves by at most ``drift`` of the way to a fresh draw's value (discrete choices and
    the mask kernels stay: one transform per segment)."""
    other = draw(s, rng)
    out = []
    for i in range(n):
        f = s.drift * (i / (n - 1) if n > 1 else 0.0)
        d = dataclasses.replace(start, shift=start.shift + f * (other.shift - start.shift))
        for name in _CONTINUOUS:
            a, b = getattr(start, name), getattr(other, name)
            setattr(d, name, a + f * (b - a))
        out.append(d)
    return out


def _colour(img: np.ndarray, d: _Draw) -> np.ndarray:
    """RGB shift, brightness/contrast (albumentations' RandomBrightnessContrast on uint8), then
    down-scale or sharpen."""
    import cv2

    x = img.astype(np.float32) + d.shift
    x = x * (1 + d.contrast) + d.brightness * 255.0
    x = np.clip(x, 0, 255).astype(np.uint8)
    h, w = x.shape[:2]
    if d.degrade == "downscale":
        small = cv2.resize(x, (max(1, w // d.down), max(1, h // d.down)), interpolation=cv2.INTER_NEAREST)
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    # albumentations' Sharpen: a 3x3 kernel mixing identity and a lightness-scaled Laplacian
    ident = np.array([[0, 0, 0], [0, 1, 0], [0, 0, 0]], np.float32)
    sharp = np.array([[-1, -1, -1], [-1, 8 + d.lightness, -1], [-1, -1, -1]], np.float32)
    kernel = (1 - d.alpha) * ident + d.alpha * sharp
    return np.clip(cv2.filter2D(x.astype(np.float32), -1, kernel), 0, 255).astype(np.uint8)


def _blend_mask(mask: np.ndarray, d: _Draw, size: int, ref: int) -> np.ndarray:
    """Dilate, then SBI's get_blend_mask at this crop size: blur k1, cut below 1, blur k2/sigma."""
    import cv2

    k = size / ref
    r = int(round(abs(d.dilate) * size))
    if r > 0:
        se = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
        mask = (cv2.dilate if d.dilate > 0 else cv2.erode)(mask, se)
    if mask.max() <= 0:
        return mask
    m = cv2.GaussianBlur(mask, (_odd(d.k1 * k),) * 2, 0)
    m = m / m.max()
    m[m < 1] = 0
    if m.max() <= 0:  # the cut left nothing (a tiny mask at a tiny crop): keep the dilated mask
        m = mask
    m = cv2.GaussianBlur(m, (_odd(d.k2 * k),) * 2, max(0.5, d.sigma * k))
    return (m / max(m.max(), 1e-6)).astype(np.float32)


def blend_frame(img: np.ndarray, points: np.ndarray, d: _Draw, s: SelfBlendSettings) -> tuple[np.ndarray, np.ndarray]:
    """One crop blended with a transformed copy of itself; returns (image, soft mask)."""
    import cv2

    size = img.shape[0]
    source, target = img, img
    if d.transform_source:
        source = _colour(img, d)
    else:
        target = _colour(img, d)
    mask = base_mask(points, size, s.mask)
    centre = points.mean(0)
    m = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), 0.0, float(d.scale))
    m[:, 2] += (d.tx * size, d.ty * size)
    source = cv2.warpAffine(source, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    mask = cv2.warpAffine(mask, m, (size, size), flags=cv2.INTER_LINEAR)
    soft = _blend_mask(mask, d, size, s.reference_size) * d.ratio
    out = soft[..., None] * source.astype(np.float32) + (1 - soft[..., None]) * target.astype(np.float32)
    return np.clip(out.round(), 0, 255).astype(np.uint8), soft


def blend_segment(crops: np.ndarray, landmarks: np.ndarray, s: SelfBlendSettings,
                  rng: np.random.Generator) -> np.ndarray:
    """A segment's ``[T, S, S, 3]`` crops self-blended: one drifting transform (or per-frame draws
    with ``flicker``), the mask following ``landmarks`` ``[T, 5, 2]`` (already filled/smoothed)."""
    n = len(crops)
    draws = [draw(s, rng) for _ in range(n)] if s.flicker else drift_path(draw(s, rng), s, rng, n)
    out = np.empty_like(crops)
    done: dict[bytes, int] = {}
    for i in range(n):
        key = crops[i].tobytes()[:4096] + landmarks[i].tobytes()
        if not s.flicker and key in done and np.array_equal(crops[done[key]], crops[i]):
            out[i] = out[done[key]]  # circular padding repeats a frame: the same blend
            continue
        out[i], _ = blend_frame(crops[i], landmarks[i], draws[i], s)
        done.setdefault(key, i)
    return out


def video_seed(settings: SelfBlendSettings, video_id: str) -> np.random.Generator:
    """One generator per video, from the settings' seed and the video id (reproducible, and
    independent of which rank or in which order a video is extracted)."""
    digest = hashlib.sha256(f"{settings.seed}:{video_id}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def self_blend_analysis(analysis: Any, cropper: Any, settings: SelfBlendSettings, video_id: str
                        ) -> tuple[Any | None, list[str]]:
    """The front end's analysis of a real video with each judged segment's crops self-blended.

    Segments whose crops hold no face landmarks (centre crops, a face MTCNN cannot find again at
    crop size) are left out. Returns (analysis or None when nothing is left, reasons of those left out).
    """
    rng = video_seed(settings, video_id)
    judged, crops, skipped = [], [], []
    for seg, track in zip(analysis.judged, analysis.crops):
        if np.all(track.fallback):
            skipped.append(f"window {seg.window}: centre crops, no face")
            continue
        marks = fill_and_smooth(crop_landmarks(cropper, track.crops), window=1 if settings.flicker else 5)
        if marks is None:
            skipped.append(f"window {seg.window}: no landmarks found in its crops")
            continue
        judged.append(seg)
        crops.append(dataclasses.replace(track, crops=blend_segment(track.crops, marks, settings, rng)))
    if not judged:
        return None, skipped
    return dataclasses.replace(analysis, judged=judged, crops=crops), skipped


# ----------------------------------------------------------------------------------------------
# Manifest rows
# ----------------------------------------------------------------------------------------------
def base_id(record: Any) -> str:
    """The real video's id of a self-blend row (its own id for any other row)."""
    vid = record.video_id
    return vid[:-len(SUFFIX)] if record.method == METHOD and vid.endswith(SUFFIX) else vid


def pseudo_record(record: Any) -> Any:
    """The self-blend row of a real video: same file and split, label fake, method ``self-blend``."""
    return dataclasses.replace(record, video_id=record.video_id + SUFFIX, label=1, method=METHOD)


def with_self_blends(records: list, splits: tuple[str, ...] = ("train", "val")) -> list:
    """Real-only training rows: the manifest's fakes of ``splits`` left out, a self-blend row added
    for each real video of ``splits``; other splits (test) unchanged, for evaluation on real fakes."""
    out = []
    for r in records:
        if r.method == METHOD:
            continue  # made again below from its real video
        if r.split in splits and int(r.label) == 1:
            continue
        out.append(r)
        if r.split in splits and int(r.label) == 0:
            out.append(pseudo_record(r))
    dropped = sum(1 for r in records if r.split in splits and int(r.label) == 1 and r.method != METHOD)
    if dropped:
        logger.info("self-blend: %d labelled fakes of %s left out (training from real videos only)", dropped,
                    "/".join(splits))
    return out
