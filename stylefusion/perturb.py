"""Perturbations of decoded video, seeded: how a checkpoint holds up when video is not clean.

Real-world video is re-encoded, resized, recaptured and filtered before anyone checks it, and
detectors that shine on clean benchmarks fall to chance there. This module makes those conditions
reproducible on decoded RGB frames (numpy ``uint8``, ``[T, H, W, 3]`` or one ``[H, W, 3]`` frame),
*before* the front end, so ``stylefusion evaluate --perturb`` measures the whole detector (face
finding included) under each, and a user can call them on their own::

    from stylefusion.perturb import Perturbation, parse_perturbations
    frames, fps = Perturbation("blur", 3).apply(frames, fps=25.0, seed=0)
    for p in parse_perturbations("deeperforensics"):   # or "social", "all", "blur:3,h264:5"
        ...

**The DeeperForensics-1.0 set** (Jiang et al., CVPR 2020; levels from their code,
``perturbation/add_distortion_to_video.py`` ``get_distortion_parameter`` and
``perturbation/distortions.py`` in github.com/EndlessSora/DeeperForensics-1.0; our own code):

=============  ======  =========================================  =============================
name           theirs  what                                       levels 1-5
=============  ======  =========================================  =============================
saturation     CS      chroma (Cb, Cr) about 0.5 scaled by        0.4, 0.3, 0.2, 0.1, 0.0
contrast       CC      every RGB value multiplied by              0.85, 0.725, 0.6, 0.475, 0.35
block          BW      8x8 grey (128) blocks at random places,    16, 32, 48, 64, 80
                       ``max(1, min(H, W) // 256) * level`` each
                       frame
noise          GNC     white Gaussian noise of variance v on the  0.001, 0.002, 0.005, 0.01, 0.05
                       YCbCr components in [0, 1]
blur           GB      Gaussian blur, kernel k, sigma k / 6       7, 9, 13, 17, 21
pixelation     JPEG    down-scale by 1/f then up again            2, 3, 4, 5, 6
h264           VC      H.264 at CRF                               30, 32, 35, 38, 40
=============  ======  =========================================  =============================

One deviation: upstream places ``min(H, W) // 256 * level`` blocks, which is zero blocks for any
video under 256 px; we place at least ``level``-many so the condition exists at every size.

**What users meet** (our own settings; levels get worse as they rise):

- ``social_720p``, ``social_480p``, ``social_360p``: social-media recompression, the clip resized so
  its short side is at most 720/480/360 px (never up-scaled, as platforms do), then H.264 at
  CRF 23, 28, 33, 38 (levels 1-4; WhatsApp/Instagram-like re-encodes sit at 28-33).
- ``fps``: a frame-rate change to 24, 15, 12, 8 frames a second (levels 1-4) by nearest-frame
  resampling in time (drops or repeats frames, as a converter without interpolation does).
- ``recapture``: filming a screen (levels 1-4): a perspective warp whose corners move by up to
  2/4/6/8 % of the frame, gamma 1.1/1.2/1.35/1.5, moiré (the screen's pixel grid, a fine grating
  of contrast 4/8/12/16 %, aliased into low-frequency fringes by resampling without
  anti-aliasing to 0.9/0.8/0.7/0.6 of the size), and a dark bezel of 2/4/6/8 % of the short side.

Video-level perturbations (``h264``, ``social_*``, ``fps``) work on a whole clip: it is encoded
with PyAV to a temporary file and decoded back. Frame-level ones work per frame; a clip's frames
get independent random draws (noise, blocks) from one seeded generator, while a recapture's warp is
drawn once per clip (a camera filming a screen is steady). The same seed gives the same frames.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from stylefusion.errors import StyleFusionError

__all__ = ["PERTURBATIONS", "PRESETS", "Perturbation", "PerturbationError", "PerturbationSpec",
           "apply_all", "encode_h264", "parse_perturbations", "perturb_video", "read_frames"]


class PerturbationError(StyleFusionError, ValueError):
    """An unknown perturbation, a level outside its range, or a clip it cannot work on."""


# ----------------------------------------------------------------------------------------------
# Frame-level perturbations (one frame [H, W, 3] uint8 RGB -> the same shape)
# ----------------------------------------------------------------------------------------------
def _to_ycbcr(img: np.ndarray) -> np.ndarray:
    """RGB uint8 -> YCbCr float in [0, 1] (BT.601 full range, as OpenCV's YCrCb)."""
    import cv2

    ycrcb = cv2.cvtColor(img, cv2.COLOR_RGB2YCrCb).astype(np.float32) / 255.0
    return ycrcb[..., (0, 2, 1)]


def _from_ycbcr(ycbcr: np.ndarray) -> np.ndarray:
    import cv2

    ycrcb = np.clip(ycbcr[..., (0, 2, 1)] * 255.0, 0, 255).round().astype(np.uint8)
    return cv2.cvtColor(ycrcb, cv2.COLOR_YCrCb2RGB)


def color_saturation(img: np.ndarray, factor: float, rng: np.random.Generator) -> np.ndarray:
    """DeeperForensics CS: the chroma's distance to neutral (0.5) scaled by ``factor``."""
    ycc = _to_ycbcr(img)
    ycc[..., 1:] = 0.5 + (ycc[..., 1:] - 0.5) * factor
    return _from_ycbcr(ycc)


def color_contrast(img: np.ndarray, factor: float, rng: np.random.Generator) -> np.ndarray:
    """DeeperForensics CC: every value multiplied by ``factor`` (truncated, as upstream)."""
    return (img.astype(np.float32) * factor).astype(np.uint8)


def block_wise(img: np.ndarray, blocks: int, rng: np.random.Generator) -> np.ndarray:
    """DeeperForensics BW: 8x8 blocks of grey 128 at random places (at least ``blocks`` of them)."""
    out = img.copy()
    h, w = img.shape[:2]
    width = 8
    n = max(1, min(h, w) // 256) * blocks
    if h <= width or w <= width:
        return out
    ys = rng.integers(0, h - width, n)
    xs = rng.integers(0, w - width, n)
    for y, x in zip(ys, xs):
        out[y:y + width, x:x + width] = 128
    return out


def gaussian_noise(img: np.ndarray, variance: float, rng: np.random.Generator) -> np.ndarray:
    """DeeperForensics GNC: white Gaussian noise of ``variance`` on YCbCr in [0, 1]."""
    ycc = _to_ycbcr(img)
    ycc += math.sqrt(variance) * rng.standard_normal(ycc.shape).astype(np.float32)
    return _from_ycbcr(ycc)


def gaussian_blur(img: np.ndarray, kernel: int, rng: np.random.Generator) -> np.ndarray:
    """DeeperForensics GB: Gaussian blur, square kernel ``kernel``, sigma ``kernel / 6``."""
    import cv2

    return cv2.GaussianBlur(img, (kernel, kernel), kernel / 6.0)


def pixelation(img: np.ndarray, factor: int, rng: np.random.Generator) -> np.ndarray:
    """DeeperForensics "JPEG" (pixelation): resized to 1/``factor`` and back (bilinear, as upstream)."""
    import cv2

    h, w = img.shape[:2]
    small = cv2.resize(img, (max(1, w // factor), max(1, h // factor)), interpolation=cv2.INTER_LINEAR)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


@dataclass(frozen=True)
class _Recapture:
    corner: float  # largest corner displacement, share of the frame size
    gamma: float
    grating: float  # contrast of the screen's pixel grid
    resample: float  # scale the camera resamples to, without anti-aliasing
    border: float  # bezel, share of the short side


RECAPTURE_LEVELS = (_Recapture(0.02, 1.1, 0.04, 0.9, 0.02), _Recapture(0.04, 1.2, 0.08, 0.8, 0.04),
                    _Recapture(0.06, 1.35, 0.12, 0.7, 0.06), _Recapture(0.08, 1.5, 0.16, 0.6, 0.08))


def _recapture_clip(frames: np.ndarray, level: _Recapture, rng: np.random.Generator) -> np.ndarray:
    """A screen filmed by a camera: grating + aliasing (moiré), gamma, perspective warp, bezel.

    The warp's corners are drawn once for the clip: a camera filming a screen does not jump."""
    import cv2

    t, h, w = frames.shape[:3]
    jitter = rng.uniform(0.25, 1.0, (4, 2)) * level.corner * np.array([w, h])
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    inward = np.float32([[1, 1], [-1, 1], [-1, -1], [1, -1]])
    dst = (src + inward * jitter).astype(np.float32)
    warp = cv2.getPerspectiveTransform(src, dst)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    # The screen's pixel grid: a grating of period ~2.2 px, slightly rotated (near Nyquist).
    angle = rng.uniform(-0.15, 0.15)
    grid = 1.0 - level.grating * (0.5 + 0.5 * np.cos(2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / 2.2))
    sw, sh = max(2, round(w * level.resample)), max(2, round(h * level.resample))
    b = max(1, round(min(h, w) * level.border))
    lut = (255.0 * (np.arange(256) / 255.0) ** level.gamma).round().astype(np.uint8)
    out = np.empty_like(frames)
    for i in range(t):
        img = frames[i].astype(np.float32) * grid[..., None]
        img = cv2.resize(img, (sw, sh), interpolation=cv2.INTER_NEAREST)  # aliasing: moiré fringes
        img = cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)
        img = lut[np.clip(img, 0, 255).astype(np.uint8)]
        img = cv2.warpPerspective(img, warp, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                                  borderValue=(12, 12, 12))
        img[:b], img[-b:], img[:, :b], img[:, -b:] = 12, 12, 12, 12
        out[i] = img
    return out


# ----------------------------------------------------------------------------------------------
# Video-level perturbations (a clip [T, H, W, 3] and its fps -> a clip and its fps)
# ----------------------------------------------------------------------------------------------
def _even(n: float) -> int:
    return max(2, int(round(n / 2)) * 2)


def encode_h264(frames: np.ndarray | Iterable[np.ndarray], path: str | Path, fps: float, *, crf: int | None = None,
                lossless: bool = False, width: int | None = None, height: int | None = None) -> Path:
    """Encode RGB frames as H.264 MP4 with PyAV: at ``crf`` (yuv420p, libx264's default preset,
    as a platform re-encodes), or ``lossless`` (qp 0, yuv444p: only the perturbation changes the
    frames). ``width``/``height`` resize first (even sizes, as yuv420p needs)."""
    import av

    frames = frames if isinstance(frames, np.ndarray) else np.stack(list(frames))
    if frames.ndim != 4 or frames.shape[0] == 0:
        raise PerturbationError("cannot encode an empty clip")
    h, w = frames.shape[1:3]
    width, height = width or w, height or h
    if not lossless:
        width, height = _even(width), _even(height)
    rate = Fraction(fps).limit_denominator(1001) if fps and fps > 0 else Fraction(25)
    opts = {"qp": "0", "preset": "ultrafast"} if lossless else {"crf": str(int(crf if crf is not None else 23)),
                                                              "preset": "medium"}
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=rate, options=opts)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv444p" if lossless else "yuv420p"
        for img in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            if (width, height) != (w, h):
                frame = frame.reformat(width=width, height=height, interpolation="AREA")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return Path(path)


def read_frames(path: str | Path) -> tuple[np.ndarray, float]:
    """Every frame of a video's first video stream as RGB ``[T, H, W, 3]``, and its frame rate.

    Raises:
        PerturbationError: the file holds no decodable video frame.
    """
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise PerturbationError(f"{path}: no video stream")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or Fraction(25)
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    except av.error.FFmpegError as exc:
        raise PerturbationError(f"{path}: cannot decode ({exc})") from None
    if not frames:
        raise PerturbationError(f"{path}: no decodable video frame")
    shape = frames[0].shape
    frames = [f for f in frames if f.shape == shape]  # a mid-stream size change: keep the first size
    return np.stack(frames), float(rate)


def h264_roundtrip(frames: np.ndarray, fps: float, crf: int, short_side: int | None = None) -> np.ndarray:
    """The clip encoded at ``crf`` (after resizing its short side to at most ``short_side``) and
    decoded back at that size: what a platform's re-encode hands to a viewer."""
    h, w = frames.shape[1:3]
    width, height = w, h
    if short_side is not None and min(h, w) > short_side:
        scale = short_side / min(h, w)
        width, height = w * scale, h * scale
    with tempfile.TemporaryDirectory(prefix="sf-perturb-") as tmp:
        path = encode_h264(frames, Path(tmp) / "clip.mp4", fps, crf=crf, width=round(width), height=round(height))
        out, _ = read_frames(path)
    return out


def change_fps(frames: np.ndarray, fps: float, target: float) -> tuple[np.ndarray, float]:
    """Nearest-frame resampling from ``fps`` to ``target`` frames a second (drops or repeats)."""
    t = frames.shape[0]
    duration = t / fps
    n = max(1, int(round(duration * target)))
    idx = np.minimum(np.floor((np.arange(n) + 0.5) * fps / target).astype(int), t - 1)
    return frames[idx], float(target)


# ----------------------------------------------------------------------------------------------
# The registry
# ----------------------------------------------------------------------------------------------
FrameFn = Callable[[np.ndarray, object, np.random.Generator], np.ndarray]


@dataclass(frozen=True)
class PerturbationSpec:
    """One kind of perturbation: its parameter at each level (level 1 = ``values[0]``)."""

    name: str
    description: str  # what it does, for tables and figures
    values: tuple  # the parameter at levels 1..n
    unit: str  # what the parameter is ("CRF", "kernel px", ...)
    source: str  # "DeeperForensics-1.0 CS" or "ours"
    video_level: bool  # works on a whole clip (encodes) rather than frame by frame
    groups: tuple[str, ...] = field(default=())  # presets it belongs to

    @property
    def levels(self) -> range:
        return range(1, len(self.values) + 1)


_DF = "DeeperForensics-1.0"
PERTURBATIONS: dict[str, PerturbationSpec] = {s.name: s for s in (
    PerturbationSpec("saturation", "colour saturation", (0.4, 0.3, 0.2, 0.1, 0.0), "chroma x", f"{_DF} CS", False,
                     ("deeperforensics",)),
    PerturbationSpec("contrast", "colour contrast", (0.85, 0.725, 0.6, 0.475, 0.35), "value x", f"{_DF} CC", False,
                     ("deeperforensics",)),
    PerturbationSpec("block", "block-wise distortion", (16, 32, 48, 64, 80), "8x8 blocks", f"{_DF} BW", False,
                     ("deeperforensics",)),
    PerturbationSpec("noise", "Gaussian noise", (0.001, 0.002, 0.005, 0.01, 0.05), "variance", f"{_DF} GNC", False,
                     ("deeperforensics",)),
    PerturbationSpec("blur", "Gaussian blur", (7, 9, 13, 17, 21), "kernel px", f"{_DF} GB", False,
                     ("deeperforensics",)),
    PerturbationSpec("pixelation", "pixelation", (2, 3, 4, 5, 6), "down-scale", f"{_DF} JPEG", False,
                     ("deeperforensics",)),
    PerturbationSpec("h264", "H.264 compression", (30, 32, 35, 38, 40), "CRF", f"{_DF} VC", True,
                     ("deeperforensics",)),
    PerturbationSpec("social_720p", "social recompression, 720p", (23, 28, 33, 38), "CRF", "ours", True, ("social",)),
    PerturbationSpec("social_480p", "social recompression, 480p", (23, 28, 33, 38), "CRF", "ours", True, ("social",)),
    PerturbationSpec("social_360p", "social recompression, 360p", (23, 28, 33, 38), "CRF", "ours", True, ("social",)),
    PerturbationSpec("fps", "frame-rate change", (24.0, 15.0, 12.0, 8.0), "fps", "ours", True, ("social",)),
    PerturbationSpec("recapture", "screen recapture", RECAPTURE_LEVELS, "severity", "ours", True, ("social",)),
)}
#: DeeperForensics' own abbreviations, accepted as names.
ALIASES = {"cs": "saturation", "cc": "contrast", "bw": "block", "gnc": "noise", "gb": "blur", "jpeg": "pixelation",
           "vc": "h264"}
PRESETS: dict[str, tuple[str, ...]] = {
    "deeperforensics": tuple(n for n, s in PERTURBATIONS.items() if "deeperforensics" in s.groups),
    "social": tuple(n for n, s in PERTURBATIONS.items() if "social" in s.groups),
}
PRESETS["all"] = PRESETS["deeperforensics"] + PRESETS["social"]

_FRAME_FNS: dict[str, FrameFn] = {"saturation": color_saturation, "contrast": color_contrast, "block": block_wise,
                                  "noise": gaussian_noise, "blur": gaussian_blur, "pixelation": pixelation}
_SOCIAL_SIDE = {"social_720p": 720, "social_480p": 480, "social_360p": 360}


def _spec(name: str) -> PerturbationSpec:
    key = ALIASES.get(name.strip().lower(), name.strip().lower())
    if key not in PERTURBATIONS:
        raise PerturbationError(f"unknown perturbation {name!r}: choose from {', '.join(PERTURBATIONS)} "
                                f"(or a preset: {', '.join(PRESETS)})")
    return PERTURBATIONS[key]


@dataclass(frozen=True)
class Perturbation:
    """One perturbation at one level; ``apply`` is deterministic given the seed."""

    name: str
    level: int

    def __post_init__(self) -> None:
        spec = _spec(self.name)
        object.__setattr__(self, "name", spec.name)
        if isinstance(self.level, bool) or not isinstance(self.level, (int, np.integer)) \
                or self.level not in spec.levels:
            raise PerturbationError(f"{spec.name}:{self.level}: level must be an integer in "
                                    f"[1, {spec.levels[-1]}] ({spec.description}, {spec.source})")
        object.__setattr__(self, "level", int(self.level))

    @property
    def spec(self) -> PerturbationSpec:
        return PERTURBATIONS[self.name]

    @property
    def value(self) -> object:
        """The parameter at this level (a CRF, a kernel size, ...)."""
        return self.spec.values[self.level - 1]

    @property
    def key(self) -> str:
        return f"{self.name}:{self.level}"

    def describe(self) -> str:
        v = self.value
        shown = (f"corner {v.corner:.0%}, gamma {v.gamma}, border {v.border:.0%}" if isinstance(v, _Recapture)
                 else f"{self.spec.unit} {v}")
        return f"{self.spec.description}, level {self.level} ({shown})"

    def condition(self) -> dict[str, object]:
        """What an upload is compared with to find its nearest condition (bitrate, size, fps)."""
        out: dict[str, object] = {"name": self.name, "level": self.level}
        if self.name == "h264" or self.name in _SOCIAL_SIDE:
            out["crf"] = int(self.value)
        if self.name in _SOCIAL_SIDE:
            out["max_short_side"] = _SOCIAL_SIDE[self.name]
        if self.name == "fps":
            out["fps"] = float(self.value)
        return out

    def apply(self, frames: np.ndarray, fps: float = 25.0, seed: int = 0) -> tuple[np.ndarray, float]:
        """The perturbed clip (``[T, H, W, 3]`` uint8, or one ``[H, W, 3]`` frame) and its frame rate.

        Raises:
            PerturbationError: not uint8 RGB frames, or an empty clip.
        """
        arr = np.asarray(frames)
        single = arr.ndim == 3
        clip = arr[None] if single else arr
        if clip.ndim != 4 or clip.shape[-1] != 3 or clip.dtype != np.uint8 or clip.shape[0] == 0:
            raise PerturbationError(f"{self.key}: expected uint8 RGB frames [T, H, W, 3] or [H, W, 3], "
                                    f"got {arr.dtype} {tuple(arr.shape)}")
        if single and self.name == "fps":
            raise PerturbationError(f"{self.key}: a frame-rate change needs a clip, not one frame")
        rng = np.random.default_rng([int(seed), list(PERTURBATIONS).index(self.name), self.level])
        if self.name in _FRAME_FNS:
            fn = _FRAME_FNS[self.name]
            out = np.stack([fn(img, self.value, rng) for img in clip])
        elif self.name == "recapture":
            out = _recapture_clip(clip, self.value, rng)
        elif self.name == "fps":
            out, fps = change_fps(clip, fps, float(self.value))
        else:
            out = h264_roundtrip(clip, fps, int(self.value), _SOCIAL_SIDE.get(self.name))
        return (out[0] if single else out), float(fps)


def parse_perturbations(text: str | Sequence[str]) -> list[Perturbation]:
    """``"deeperforensics"``, ``"social"``, ``"all"`` (every level of each), or ``"name:level,..."``
    (a bare ``name`` means all its levels); a list of such strings is joined.

    Raises:
        PerturbationError: an unknown name or a level outside its range, in one line.
    """
    parts = [p.strip() for item in ([text] if isinstance(text, str) else text) for p in str(item).split(",")]
    out: list[Perturbation] = []
    for part in filter(None, parts):
        if part.lower() in PRESETS:
            out += [Perturbation(n, lv) for n in PRESETS[part.lower()] for lv in PERTURBATIONS[n].levels]
            continue
        name, sep, level = part.partition(":")
        spec = _spec(name)
        if not sep:
            out += [Perturbation(spec.name, lv) for lv in spec.levels]
            continue
        try:
            lv = int(level)
        except ValueError:
            raise PerturbationError(f"{part}: level must be an integer in [1, {spec.levels[-1]}] "
                                    f"({spec.description}, {spec.source})") from None
        out.append(Perturbation(spec.name, lv))
    if not out:
        raise PerturbationError(f"no perturbation in {text!r}: give a preset ({', '.join(PRESETS)}) or name:level")
    seen: dict[str, Perturbation] = {}
    for p in out:
        seen.setdefault(p.key, p)
    return list(seen.values())


def apply_all(frames: np.ndarray, fps: float, perturbations: Sequence[Perturbation], seed: int = 0
              ) -> tuple[np.ndarray, float]:
    """Several perturbations in order (a chain: e.g. recapture, then social recompression)."""
    for p in perturbations:
        frames, fps = p.apply(frames, fps, seed)
    return frames, fps


def perturb_video(src: str | Path, dst: str | Path, perturbations: Perturbation | Sequence[Perturbation],
                  seed: int = 0) -> Path:
    """Decode ``src``, perturb it, write ``dst`` (H.264, lossless, so only the perturbation changes
    the frames; a compression perturbation's own encode is inside its frames). Audio is dropped.

    Raises:
        PerturbationError: ``src`` cannot be decoded.
    """
    chain = [perturbations] if isinstance(perturbations, Perturbation) else list(perturbations)
    frames, fps = read_frames(src)
    frames, fps = apply_all(frames, fps, chain, seed)
    return encode_h264(frames, dst, fps, lossless=True)
