"""Processing history of a video, read from its container and stream: how hard it was compressed and
whether it looks like a screen recording.

Re-encoding and screen recapture are how fakes are laundered and how real videos turn suspicious: a
200 kbit/s re-upload or a phone filming a monitor carries few of the traces the detector learnt, so
its answer about such a file deserves less confidence, with the reason said. This module measures;
the decision rule (the lead's ``stylefusion.decision``) decides what a reason does to the label.

What is measured, and why each is cheap:

- **bits per pixel** (``bpp``): the video stream's bit rate over ``width * height * fps``, i.e. the
  bits spent on each pixel of each frame. It needs no decoding (the container states the rate, or
  the packet sizes give it). It mixes content with compression (a static newsreader costs fewer bits
  than a crowd at the same quality), so it is read together with:
- **mean quantiser** (``mean_qp``): the H.264 decoder's own quantisation parameter, averaged over the
  few frames decoded here (FFmpeg exports it as ``venc_params`` side data). It is how coarsely the
  encoder rounded the picture, whatever the content: 51 is the coarsest H.264 allows. Other codecs'
  scales differ, so it is kept for H.264 only.
- **codec, profile, pixel format, encoder and handler tags**: which tool wrote the file (``Lavf`` is
  FFmpeg, so a re-encode or re-mux; camera firmware writes its own names).
- **signs of a screen recording** (:data:`RECAPTURE_SIGNS`): duplicated consecutive frames (a screen
  grabber samples at a fixed rate while the picture on screen changes more slowly; a camera sensor's
  noise makes two consecutive frames differ everywhere), a variable or non-standard frame rate,
  constant-colour borders (window chrome, a player's black bars), a frame size that is a computer or
  phone *display* rather than a camera format, and a screen-recorder's name in the tags. None is proof
  alone; they add up to a score (:func:`recapture_score`).

Only a short stretch is decoded (:data:`DECODE_FRAMES` frames from about a quarter of the way in), and
at most :data:`MAX_PACKETS` packets are demuxed for timestamps, so a long file costs little.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stylefusion.config import HISTORY_DEFAULTS

#: Consecutive frames decoded for the duplicate, border and quantiser measurements (about 2 s).
DECODE_FRAMES = 61
#: Frames among the decoded ones that the borders are measured on (evenly spaced).
BORDER_FRAMES = 5
#: Video packets demuxed (without decoding) for the timestamps and, when the container does not
#: state one, the bit rate.
MAX_PACKETS = 3000
#: Two consecutive frames whose mean absolute luma difference (0-255 scale) is below this are the
#: same picture. Measured on the shared clips: camera footage, even a static newsreader at a low bit
#: rate, stays above it in >= 91% of pairs; the two screen recordings fall below it in 68-69%.
DUPLICATE_MEAN_DIFF = 0.05
#: A row or column of a frame is "constant" when the standard deviation of its luma is below this.
BORDER_LINE_STD = 2.0
#: Fewest constant lines that make a border (one or two flat lines at an edge are common encoder
#: padding or a vignette's last row).
MIN_BORDER_PX = 4
#: Standard frame rates of cameras, broadcast and film (fps). A nominal rate more than 1% from all of
#: them (the 39 fps of a phone screen recording) comes from a variable-rate source.
STANDARD_FPS = (8.0, 10.0, 12.0, 12.5, 15.0, 20.0, 23.976, 24.0, 25.0, 29.97, 30.0, 48.0, 50.0,
                59.94, 60.0, 90.0, 100.0, 119.88, 120.0, 240.0)
#: Frame sizes (width x height, either orientation) of computer and phone displays that are not
#: camera or broadcast formats: a video this size was very likely captured from a screen. Laptop and
#: desktop panels (1366x768, 1440x900, 1536x864 is 1920x1080 at 125% scaling, 16:10 panels,
#: MacBook Retina sizes) and phone screens and their screen-recording outputs (886x1920 is an iPhone
#: screen recording, 1170x2532 and 1179x2556 iPhone panels, 1080x2400 and 1440x3200 Android ones).
SCREEN_SIZES = frozenset({
    (1024, 768), (1152, 864), (1280, 800), (1280, 1024), (1360, 768), (1366, 768), (1440, 900),
    (1536, 864), (1600, 900), (1600, 1200), (1680, 1050), (1920, 1200), (2048, 1152), (2560, 1600),
    (2560, 1080), (2880, 1800), (3024, 1964), (3440, 1440), (3456, 2234), (2736, 1824),
    (886, 1920), (828, 1792), (750, 1334), (1125, 2436), (1170, 2532), (1179, 2556), (1242, 2688),
    (1284, 2778), (1290, 2796), (1080, 2340), (1080, 2400), (1440, 3200), (1440, 3120), (720, 1600),
    (720, 1560), (1080, 2160), (1440, 2960),
})
#: Long side over short side of display shapes no camera records in: 16:10 panels and the tall
#: 19.5:9-20:9 phone screens (cameras record 4:3, 3:2, 16:9, 1:1 and their portrait turns).
SCREEN_ASPECTS = (1.6, 2.1667, 2.2222)
#: Names of screen-recording tools, matched case-insensitively in the encoder, handler and software
#: tags of the container and the video stream.
RECORDER_NAMES = ("obs studio", "obs-studio", "obs ", "screenflow", "camtasia", "bandicam", "sharex",
                  "screencast", "screen record", "screenrecord", "snagit", "loom", "kazam",
                  "simplescreenrecorder", "fraps", "shadowplay", "game bar", "screencapture",
                  "screen capture", "replaykit")
#: What each recapture sign means, and how much it counts toward :func:`recapture_score`. Weak signs
#: (one point) also occur in real footage: letterboxed uploads have borders, phones record at a
#: variable rate. Strong signs (two points) are rare outside a screen capture.
RECAPTURE_SIGNS: dict[str, tuple[int, str]] = {
    "duplicated_frames": (2, "many consecutive frames are identical (a grabber sampling a slower picture)"),
    "recorder_tag": (2, "the file names a screen-recording tool"),
    "variable_frame_rate": (1, "the frame rate is variable or non-standard"),
    "borders": (1, "the frames have constant-colour borders"),
    "screen_size": (1, "the frame size is a computer or phone display, not a camera format"),
}


@dataclass(frozen=True)
class HistoryLimits:
    """The limits :func:`history_reasons` holds a video to.

    The defaults (:data:`stylefusion.config.HISTORY_DEFAULTS`) are documented constants measured on
    the shared clips and carphone (see the module docstring and ``benchmarks/provenance_table.py``);
    a trained checkpoint carries limits from its own training videos
    (:func:`stylefusion.research.calibrate.history_limits_from`) and the detector passes those.

    min_bpp: below this many bits per pixel per frame a video whose quantiser is unknown (not
        H.264) is heavily compressed. On the shared clips camera footage and ordinary re-encodes
        spend 0.028-0.65 (three static shots 0.005-0.018); carphone at CRF 45 spends 0.018.
    max_h264_qp: above this mean H.264 quantiser a video is heavily compressed, whatever its bit
        rate. On the shared clips camera footage and CRF-23-like re-encodes average 11-34; the
        FF++ c23 newsreader 004 (114 kbit/s at 720p) 45.8; carphone at CRF 45 46.2, pristine 10.9.
    min_recapture_score: :func:`recapture_score` at or above this is ``possible_recapture``: one
        strong sign, or two weak ones together.
    duplicate_fraction: the share of consecutive frame pairs that must be duplicates for the
        ``duplicated_frames`` sign (camera footage <= 0.09 on the shared clips; screen recordings 0.68).
    border_fraction: a constant border counts when it covers at least this share of the frame's side.
    timestamp_jitter: coefficient of variation of the frame durations above which the rate is variable.
    """

    min_bpp: float = HISTORY_DEFAULTS["min_bpp"]
    max_h264_qp: float = HISTORY_DEFAULTS["max_h264_qp"]
    min_recapture_score: int = HISTORY_DEFAULTS["min_recapture_score"]
    duplicate_fraction: float = 0.3
    border_fraction: float = 0.01
    timestamp_jitter: float = 0.1

    def to_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "HistoryLimits":
        """Limits from a dict (e.g. a checkpoint's config); unknown keys are ignored, missing ones default."""
        d = d or {}
        kw = {k: type(getattr(cls(), k))(d[k]) for k in cls.__dataclass_fields__ if k in d}
        return cls(**kw)


DEFAULT_LIMITS = HistoryLimits()

#: The quality reasons this module adds, and what each means in words.
HISTORY_REASONS = {
    "heavily_recompressed": "the video is heavily compressed (re-encoded at a low bit rate)",
    "possible_recapture": "the video may be a screen recording or a re-filming of another screen",
}


@dataclass(frozen=True)
class ProcessingHistory:
    """What the container and the stream say about how a video was made and re-made.

    Fields that could not be measured are None (a raw ``.264`` stream has no bit rate or timestamps).
    ``bpp`` is bits per pixel per frame: ``bit_rate / (width * height * fps)``. ``mean_qp`` is the
    H.264 quantiser averaged over the decoded frames. ``duplicate_fraction`` is the share of
    consecutive decoded frame pairs that are the same picture; ``timestamp_jitter`` the coefficient of
    variation of the frame durations; ``border_px`` the constant-colour lines at each edge, the
    smallest over the sampled frames (so a border must persist). ``recapture_signs`` are keys of
    :data:`RECAPTURE_SIGNS`, explained in ``recapture_detail``.
    """

    path: str
    container: str | None = None
    codec: str | None = None
    profile: str | None = None
    pix_fmt: str | None = None
    width: int = 0
    height: int = 0
    fps: float | None = None
    bit_rate: int | None = None
    bit_rate_source: str | None = None
    bpp: float | None = None
    mean_qp: float | None = None
    encoder: str | None = None
    handler: str | None = None
    software: str | None = None
    frames_decoded: int = 0
    duplicate_fraction: float | None = None
    timestamp_jitter: float | None = None
    border_px: dict[str, int] = field(default_factory=dict)
    recapture_signs: tuple[str, ...] = ()
    recapture_detail: dict[str, str] = field(default_factory=dict)
    error: str | None = None

    @property
    def recapture_score(self) -> int:
        return recapture_score(self.recapture_signs)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (floats rounded; the signs as a list, with their score)."""
        def r(x: float | None, n: int = 5) -> float | None:
            return None if x is None else round(float(x), n)

        return {
            "container": self.container, "codec": self.codec, "profile": self.profile,
            "pix_fmt": self.pix_fmt, "width": self.width, "height": self.height, "fps": r(self.fps, 3),
            "bit_rate": self.bit_rate, "bit_rate_source": self.bit_rate_source, "bpp": r(self.bpp),
            "mean_qp": r(self.mean_qp, 2), "encoder": self.encoder, "handler": self.handler,
            "software": self.software, "frames_decoded": self.frames_decoded,
            "duplicate_fraction": r(self.duplicate_fraction, 3), "timestamp_jitter": r(self.timestamp_jitter, 4),
            "border_px": dict(self.border_px), "recapture_signs": list(self.recapture_signs),
            "recapture_score": self.recapture_score, "recapture_detail": dict(self.recapture_detail),
            "error": self.error,
        }


def recapture_score(signs: tuple[str, ...] | list[str]) -> int:
    """The points of ``signs`` (:data:`RECAPTURE_SIGNS`): strong signs count 2, weak ones 1."""
    return sum(RECAPTURE_SIGNS[s][0] for s in signs if s in RECAPTURE_SIGNS)


# ----------------------------------------------------------------------------------------------
# measurements
# ----------------------------------------------------------------------------------------------
def _tag(metadatas: list[dict[str, str]], *names: str) -> str | None:
    """The first non-empty tag among ``names`` (case-insensitive) in the given metadata dicts."""
    for md in metadatas:
        low = {str(k).lower(): str(v) for k, v in md.items()}
        for n in names:
            v = low.get(n)
            if v and v.strip():
                return v.strip()
    return None


def screen_size_reason(width: int, height: int) -> str | None:
    """Why ``width x height`` looks like a display rather than a camera, or None.

    A listed display resolution (:data:`SCREEN_SIZES`), or a display shape (:data:`SCREEN_ASPECTS`) at
    a size a screen has (short side >= 720): small crops of those shapes are common in datasets.
    """
    if width <= 0 or height <= 0:
        return None
    if (width, height) in SCREEN_SIZES or (height, width) in SCREEN_SIZES:
        return f"{width}x{height} is a display resolution"
    long, short = max(width, height), min(width, height)
    if short >= 720:
        ratio = long / short
        for a in SCREEN_ASPECTS:
            if abs(ratio - a) / a < 0.01:
                return f"{width}x{height} has a display's shape ({ratio:.3f}:1)"
    return None


def _standard_fps(fps: float) -> bool:
    return any(abs(fps - s) / s <= 0.01 for s in STANDARD_FPS)


def _border_lines(grey: np.ndarray, std_limit: float) -> dict[str, int]:
    """Lines of one colour at each edge of one grey frame: rows (top, bottom) and columns (left,
    right) counted inward while each line is flat (luma std below ``std_limit``) and has the edge
    line's colour (within ``std_limit``). A gradient sky has flat rows of changing colour: no border."""
    out: dict[str, int] = {}
    g = grey.astype(np.float32)
    for side, lines in (("top", g), ("bottom", g[::-1]), ("left", g.T), ("right", g.T[::-1])):
        stds = lines.std(axis=1)
        means = lines.mean(axis=1)
        ok = (stds < std_limit) & (np.abs(means - means[0]) < std_limit)
        broken = np.flatnonzero(~ok)
        out[side] = int(broken[0]) if len(broken) else int(len(stds))
    return out


def _measure_packets(container: Any, stream: Any) -> tuple[int, int, float | None, float | None]:
    """(bytes, packets, seconds spanned, coefficient of variation of frame durations) over the first
    :data:`MAX_PACKETS` video packets, demuxed without decoding (span and jitter are None for a
    stream without timestamps)."""
    total = count = 0
    pts: list[int] = []
    for packet in container.demux(stream):
        if packet.size:
            total += packet.size
            count += 1
            if packet.pts is not None:
                pts.append(int(packet.pts))
        if count >= MAX_PACKETS:
            break
    if len(pts) < 3 or stream.time_base is None:
        return total, count, None, None
    ts = np.unique(np.asarray(pts, np.int64)) * float(stream.time_base)
    d = np.diff(ts)
    d = d[d > 0]
    if len(d) < 2:
        return total, count, None, None
    span = float(ts[-1] - ts[0]) + float(np.median(d))
    return total, count, span, float(d.std() / d.mean())


def _decode_stretch(path: str, fmt: str | None, options: dict[str, str],
                    seek_s: float | None) -> tuple[list[np.ndarray], list[float]]:
    """Up to :data:`DECODE_FRAMES` consecutive grey frames from about ``seek_s`` in, and the mean
    H.264 quantiser of each (empty for other codecs)."""
    import av

    frames: list[np.ndarray] = []
    qps: list[float] = []
    with av.open(path, format=fmt, options=options) as c:
        s = c.streams.video[0]
        # Slice threads only: with frame threads the decoder attached the quantiser side data to
        # different frames from run to run (the mean QP of carphone read 10.90 or 10.67).
        s.thread_type = "SLICE"
        if s.codec_context.name == "h264":
            s.codec_context.options = {"export_side_data": "venc_params"}
        if seek_s and s.time_base:
            try:
                c.seek(int(seek_s / float(s.time_base)), stream=s, backward=True)
            except (av.error.FFmpegError, OSError, ValueError):
                c.seek(0)
        for frame in c.decode(s):
            frames.append(frame.to_ndarray(format="gray"))
            for sd in frame.side_data:
                if "ENC_PARAMS" in str(getattr(sd, "type", "")) and hasattr(sd, "qp_map"):
                    try:
                        qps.append(float(np.asarray(sd.qp_map(), np.float64).mean()))
                    except Exception:  # noqa: BLE001 - a missing map only loses the quantiser
                        pass
            if len(frames) >= DECODE_FRAMES:
                break
    return frames, qps


def measure_history(path: str | Path, *, format: str | None = None, options: dict[str, str] | None = None,
                    limits: HistoryLimits = DEFAULT_LIMITS) -> ProcessingHistory:
    """Measure the :class:`ProcessingHistory` of the video at ``path``.

    ``format`` and ``options`` go to :func:`av.open` (a raw ``.264`` needs ``format="h264"``). The
    limits set what counts as a sign (duplicates, borders, jitter); :func:`history_reasons` applies
    the rest. Never raises for a bad file: the record then has ``error`` set and what was measured.
    """
    import av

    p = str(path)
    info: dict[str, Any] = {"path": p}
    try:
        with av.open(p, format=format, options=options or {}) as c:
            if not c.streams.video:
                return ProcessingHistory(path=p, container=c.format.name, error="no video stream")
            s = c.streams.video[0]
            cc = s.codec_context
            info.update(container=c.format.name, codec=cc.name, profile=cc.profile or None,
                        pix_fmt=cc.format.name if cc.format else None, width=int(cc.width or 0),
                        height=int(cc.height or 0))
            rate = s.average_rate or s.guessed_rate or s.base_rate
            fps = float(rate) if rate else None
            metas = [dict(s.metadata), dict(c.metadata)]
            info["encoder"] = _tag(metas, "encoder", "com.apple.quicktime.software", "writing_application")
            info["handler"] = _tag(metas, "handler_name")
            info["software"] = _tag(metas, "software", "com.apple.quicktime.software", "description")
            declared = int(s.bit_rate) if s.bit_rate else None
            duration = float(s.duration * s.time_base) if s.duration and s.time_base else (
                c.duration / 1e6 if c.duration else None)
            nbytes, npackets, span, jitter = _measure_packets(c, s)
        if not span and fps and npackets >= 2:  # no timestamps (a raw stream): one packet per frame
            span = npackets / fps
        info["fps"] = fps
        info["timestamp_jitter"] = jitter
        if declared:
            info["bit_rate"], info["bit_rate_source"] = declared, "stream"
        elif span and span > 0 and nbytes:
            info["bit_rate"], info["bit_rate_source"] = int(round(nbytes * 8 / span)), "packets"
        if info.get("bit_rate") and fps and info["width"] and info["height"]:
            info["bpp"] = info["bit_rate"] / (info["width"] * info["height"] * fps)
        seek = duration * 0.25 if duration and duration > 8 else None
        frames, qps = _decode_stretch(p, format, options or {}, seek)
    except (av.error.FFmpegError, OSError, ValueError, IndexError) as exc:
        return ProcessingHistory(**info, error=f"{type(exc).__name__}: {exc}")
    info["frames_decoded"] = len(frames)
    if qps and info.get("codec") == "h264":
        info["mean_qp"] = float(np.mean(qps))
    signs: list[str] = []
    detail: dict[str, str] = {}
    if len(frames) >= 2:
        same = [float(np.abs(frames[i + 1].astype(np.int16) - frames[i]).mean()) < DUPLICATE_MEAN_DIFF
                for i in range(len(frames) - 1) if frames[i].shape == frames[i + 1].shape]
        if same:
            info["duplicate_fraction"] = float(np.mean(same))
            if info["duplicate_fraction"] >= limits.duplicate_fraction:
                signs.append("duplicated_frames")
                detail["duplicated_frames"] = f"{info['duplicate_fraction']:.0%} of consecutive frame pairs are identical"
    if frames:
        idx = np.linspace(0, len(frames) - 1, min(BORDER_FRAMES, len(frames))).round().astype(int)
        per = [_border_lines(frames[i], BORDER_LINE_STD) for i in idx]
        border = {k: min(b[k] for b in per) for k in ("top", "bottom", "left", "right")}
        h, w = frames[0].shape[:2]
        if max(border["top"], border["bottom"]) >= h:  # a uniform picture is not a border
            border = {k: 0 for k in border}
        info["border_px"] = border
        side_len = {"top": h, "bottom": h, "left": w, "right": w}
        wide = [k for k in border if border[k] >= max(MIN_BORDER_PX, limits.border_fraction * side_len[k])]
        if wide:
            signs.append("borders")
            detail["borders"] = ", ".join(f"{k} {border[k]} px" for k in wide)
    fps = info.get("fps")
    if jitter is not None and jitter > limits.timestamp_jitter:
        signs.append("variable_frame_rate")
        detail["variable_frame_rate"] = f"frame durations vary by {jitter:.0%}"
    elif fps and not _standard_fps(fps):
        signs.append("variable_frame_rate")
        detail["variable_frame_rate"] = f"{fps:.3g} fps is not a camera or broadcast rate"
    why = screen_size_reason(info.get("width", 0), info.get("height", 0))
    if why:
        signs.append("screen_size")
        detail["screen_size"] = why
    tags = " ".join(str(info.get(k) or "") for k in ("encoder", "handler", "software")).lower()
    hit = next((n.strip() for n in RECORDER_NAMES if n in tags + " "), None)
    if hit:
        signs.append("recorder_tag")
        detail["recorder_tag"] = f"the tags name {hit!r}"
    order = list(RECAPTURE_SIGNS)
    return ProcessingHistory(**info, recapture_signs=tuple(sorted(signs, key=order.index)), recapture_detail=detail)


# ----------------------------------------------------------------------------------------------
# reasons
# ----------------------------------------------------------------------------------------------
def history_reasons(history: ProcessingHistory, limits: HistoryLimits | None = None) -> list[str]:
    """The :data:`HISTORY_REASONS` keys ``history`` fails under ``limits`` (default :data:`DEFAULT_LIMITS`).

    ``heavily_recompressed``: a mean H.264 quantiser above ``max_h264_qp``, or for other codecs
    (no quantiser measured) bits per pixel below ``min_bpp``. Where the quantiser is measured it
    decides alone: bits per pixel also falls with static content (a screen recording of a still
    page at 0.010, a static 720p interview at 0.014, both with quantisers of 16-23), the quantiser
    does not. ``possible_recapture``: a :func:`recapture_score` of at least ``min_recapture_score``. These make an answer ``uncertain`` (the detector still gives p_fake),
    never ``unsupported``.
    """
    lim = limits or DEFAULT_LIMITS
    reasons = []
    if history.mean_qp is not None and history.codec == "h264":
        coarse = history.mean_qp > lim.max_h264_qp
    else:
        coarse = history.bpp is not None and history.bpp < lim.min_bpp
    if coarse:
        reasons.append("heavily_recompressed")
    if history.recapture_score >= lim.min_recapture_score:
        reasons.append("possible_recapture")
    return reasons


def history_reason_text(history: ProcessingHistory, limits: HistoryLimits | None = None) -> list[str]:
    """One sentence per reason of :func:`history_reasons`, with the measured figures and the limits."""
    lim = limits or DEFAULT_LIMITS
    out = []
    for r in history_reasons(history, lim):
        if r == "heavily_recompressed":
            figs = []
            if history.bpp is not None:
                figs.append(f"{history.bpp:.4f} bits per pixel (limit {lim.min_bpp:g})")
            if history.mean_qp is not None:
                figs.append(f"mean H.264 quantiser {history.mean_qp:.1f} (limit {lim.max_h264_qp:g})")
            out.append(f"{HISTORY_REASONS[r]}: {', '.join(figs)}")
        else:
            signs = "; ".join(history.recapture_detail.get(s, RECAPTURE_SIGNS[s][1])
                              for s in history.recapture_signs)
            out.append(f"{HISTORY_REASONS[r]}: {signs}")
    return out


# ----------------------------------------------------------------------------------------------
# how the checkpoint did on videos like this one (the figures `stylefusion train --robustness` keeps)
# ----------------------------------------------------------------------------------------------
#: The unperturbed cell of a robustness grid (stylefusion.research.robustness).
CLEAN = "clean"


def nearest_condition(cells: list[dict[str, Any]], condition: dict[str, Any]) -> dict[str, Any] | None:
    """The cell a condition names (``name``/``level`` or ``condition``), else the compression cell
    (or clean) nearest in log bits per pixel per frame and log short side."""
    by_key = {c["condition"]: c for c in cells}
    key = condition.get("condition") or (f"{condition['name']}:{condition['level']}"
                                          if "name" in condition and "level" in condition else None)
    if key is not None:
        return by_key.get(key)
    bitrate, side = condition.get("bitrate_bps"), condition.get("short_side")
    if not bitrate or not side:
        return None
    fps = condition.get("fps") or 25.0

    def bpp(b: float, s: float, f: float) -> float:
        return b / (s * s * 16 / 9 * f)  # a 16:9 frame of that short side

    target = (math.log(bpp(bitrate, side, fps)), math.log(side))
    best, best_d = None, math.inf
    for c in cells:
        if (c.get("crf") is None and c["name"] != CLEAN) or not c.get("bitrate_bps") or not c.get("short_side"):
            continue
        here = (math.log(bpp(c["bitrate_bps"], c["short_side"], c.get("fps") or 25.0)), math.log(c["short_side"]))
        d = abs(here[0] - target[0]) + 0.5 * abs(here[1] - target[1])
        if d < best_d:
            best, best_d = c, d
    return best


def robustness_sentence(config: Any, condition: dict[str, Any]) -> str | None:
    """One sentence for under a verdict: how this checkpoint did on validation videos under the
    condition nearest to ``condition``, or None when the checkpoint carries no figures for it.

    ``condition``: ``{"name": "h264", "level": 3}`` (or ``{"condition": "h264:3"}``), or an upload's
    ``{"bitrate_bps": ..., "short_side": ..., "fps": ...}`` (:func:`probe` measures them).
    """
    record = getattr(config, "training", None)
    summary = getattr(record, "robustness", None) or {}
    cells = summary.get("cells") or []
    cell = nearest_condition(cells, condition) if cells else None
    if cell is None or cell.get("auc") is None:
        return None
    split = {"val": "validation", "test": "test"}.get(summary.get("split"), summary.get("split") or "held-out")
    if cell["name"] == CLEAN:
        how = "as they were (not recompressed)"
    elif cell.get("crf") is not None:
        how = f"recompressed like this one ({cell['description']})"
    else:
        how = f"under {cell['description']}"
    return (f"on {split} videos {how}, this checkpoint's AUC was {cell['auc']:.2f} "
            f"and it answered {cell['answered']:.0%} of them")


__all__ = ["CLEAN", "nearest_condition", "robustness_sentence", "DEFAULT_LIMITS", "HISTORY_REASONS", "HistoryLimits", "ProcessingHistory", "RECAPTURE_SIGNS",
           "history_reason_text", "history_reasons", "measure_history", "recapture_score", "screen_size_reason"]
