"""Read a video and sample T frames uniformly over its whole length (the report's first stage).

Why PyAV and two passes: uniform sampling needs the number of frames, which container headers
often get wrong (variable frame rate, edited files, missing counts). The first pass demuxes packets
only — no decoding — to learn every frame's presentation timestamp and where the keyframes are.
The second pass decodes only what the sampled frames need: it seeks to the keyframe before a
sampled frame when that frame lies in a later group of pictures, so a 10-minute 720p video costs
about as much memory as a 10-second one and only a few groups of pictures are decoded.

Raw elementary streams (``.264``/``.h264``, ``.265``/``.hevc``, as cameras, CCTV recorders and
encoders write them) have no container: their packets carry no timestamps and FFmpeg cannot seek in
them. They still get the packet scan (its packet count is the frame count, learned without
decoding), then ONE sequential decode pass that converts and keeps only the sampled frames, so
memory stays that of the sampled frames whatever the length. The same pass serves any file whose
demuxer refuses to seek. Frames of a stream without timestamps are timed as index / frame rate.

A video with fewer than T frames is padded circularly (frame order 0, 1, ..., N-1, 0, 1, ...), as in
the report. Every sampled frame keeps its source index (its position in presentation order) and its
timestamp. Rotation metadata is applied, so frames are upright as a player shows them.

Windows (issue 14). A long video is analysed as consecutive stretches of ``window_s`` seconds
(:meth:`VideoReader.windows`), T frames sampled in each (:meth:`VideoReader.read`), so the head
sees what it was trained on instead of frames minutes apart. :class:`VideoReader` scans once and
then decodes only the frames asked for; :func:`read_frames` is one window over the whole video.
At most ``max_windows`` stretches are analysed, spread evenly (first and last included), so a
10-hour video costs what ``max_windows`` short ones do (plus the packet scan).

Decoding ahead (issue 17). :class:`Prefetch` runs an iterator such as ``iter_read`` in one worker
thread, one item ahead of its consumer: the next window decodes while the faces of the current one
are detected (PyAV releases the GIL while it decodes; :func:`stylefusion.people.analyse_people`
does it where a core is free for the decoder). At most one window is decoded and not yet handed
out, errors reach the consumer at the item where they happened, and closing it (leaving the
``with`` block, also on an exception) stops and joins the thread.
"""

from __future__ import annotations

import bisect
import logging
import math
import os
import queue
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np

from stylefusion.config import StyleFusionConfig
from stylefusion.errors import VideoReadError

logger = logging.getLogger(__name__)

#: Raw elementary-stream extensions and the FFmpeg demuxer that reads them. Content probing usually
#: recognises these streams by itself; the forced demuxer is the second try for a stream that
#: probing does not recognise (e.g. one that starts without a parameter set in its first bytes).
RAW_STREAM_FORMATS: dict[str, str] = {".264": "h264", ".h264": "h264", ".265": "hevc", ".h265": "hevc",
                                      ".hevc": "hevc"}

#: File extensions treated as videos when a folder is searched (CLI ``detect``, dataset adapters).
#: One tuple for every caller, so a format that decodes is also found; sorted, so messages that list
#: it are stable. Files named explicitly are read whatever their extension.
VIDEO_EXTENSIONS: tuple[str, ...] = tuple(sorted(
    {".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".gif", ".3gp",
     ".ts"} | set(RAW_STREAM_FORMATS)))

#: Frame rate assumed for a stream without timestamps whose rate FFmpeg cannot guess either (FFmpeg's
#: own default for raw H.264/HEVC input, and the PAL camera rate).
FALLBACK_FPS = 25


@dataclass
class VideoInfo:
    """What the video is, as read from its stream (sizes as displayed, i.e. after rotation)."""

    path: str
    width: int
    height: int
    num_frames: int
    fps: float
    #: Seconds from the first frame to the END of the last (first-to-last plus one mean frame period,
    #: ``num_frames / fps``): the length of the video, and where the last window ends, so the
    #: result states one duration (:attr:`VideoReader.duration`).
    duration: float
    rotation: int
    codec: str
    decoded_scale: float = 1.0  # decoded frame size / source size (< 1 for downscaled large videos)
    truncated: bool = False  # packets stopped early (a cut-off file): frames are sampled from what is there

    def to_dict(self) -> dict:
        return {
            "path": self.path, "width": self.width, "height": self.height,
            "num_frames": self.num_frames, "fps": round(self.fps, 4),
            "duration": round(self.duration, 4), "rotation": self.rotation, "codec": self.codec,
            "truncated": self.truncated,
        }


@dataclass
class Frames:
    """T sampled frames with their provenance.

    images: [T, H, W, 3] uint8 RGB (upright, possibly downscaled by ``info.decoded_scale``);
    source_indices: [T] int64 index of each frame in presentation order;
    timestamps: [T] float64 seconds from the first frame.
    """

    images: np.ndarray
    source_indices: np.ndarray
    timestamps: np.ndarray
    info: VideoInfo
    #: decoded size / source size of THESE images: ``info.decoded_scale`` unless they were read at
    #: another long side (the scan's smaller frames, :meth:`VideoReader.iter_frames`).
    decoded_scale: float | None = None

    @property
    def scale(self) -> float:
        return self.info.decoded_scale if self.decoded_scale is None else self.decoded_scale


@dataclass
class Window:
    """One stretch of the video: the source frames whose timestamps lie in [start_s, end_s).

    All windows of a video have the same length (the video's duration / their number, so each is at
    most ``window_s``); together they cover the video without gap or overlap, from 0 to
    :attr:`VideoReader.duration`. ``start_s``/``end_s`` are the stretch's bounds in seconds from the
    first frame; the first frame of the stretch lies at or after ``start_s`` by less than one frame
    period (exactly on it for a constant frame rate that divides the stretch), and the sampled
    frames' own times are in :attr:`Frames.timestamps`.
    """

    index: int  # position among ALL windows of the video (0..n-1)
    start: int  # first source frame index (presentation order) of the stretch
    stop: int  # one past the last source frame index (== start: no frame starts in the stretch)
    start_s: float  # seconds (from the first frame) where the stretch starts
    end_s: float  # where it ends: the next window's start_s, or the video's duration for the last
    analysed: bool = True  # False: left out by max_windows, empty, or (after iter_read) undecodable

    @property
    def num_source(self) -> int:
        """Source frames in the stretch."""
        return self.stop - self.start


#: A ``windows()`` call that would make more stretches than this is refused (a tiny ``window_s``).
MAX_WINDOWS = 1_000_000


def sample_indices(num_source: int, num_frames: int) -> np.ndarray:
    """Indices of ``num_frames`` frames spread uniformly over ``num_source`` frames.

    The first and the last frame are always included when there are enough frames; with fewer
    source frames than ``num_frames`` the sequence is padded circularly.
    """
    if num_source <= 0:
        raise ValueError("num_source must be positive")
    if num_source < num_frames:
        return np.arange(num_frames, dtype=np.int64) % num_source
    return np.round(np.linspace(0, num_source - 1, num_frames)).astype(np.int64)


def _check_file(path: Path) -> None:
    if not os.path.lexists(path):
        raise VideoReadError(path, "file does not exist")
    if not path.exists():
        raise VideoReadError(path, "is a broken symbolic link")
    if path.is_dir():
        raise VideoReadError(path, "is a directory, not a video file")
    if not path.is_file():
        raise VideoReadError(path, "is not a regular file")
    if path.stat().st_size == 0:
        raise VideoReadError(path, "file is empty")


def _open(path: Path):
    """Open ``path`` by content; a raw-stream extension gets its demuxer forced as a second try.

    Probing comes first so that a container file with a raw-stream name (DVRs write mp4 files
    called ``.h264``) still opens as what it is.
    """
    import av

    try:
        container = av.open(str(path), metadata_errors="ignore")
    except (av.FFmpegError, UnicodeDecodeError, OSError, ValueError) as exc:
        container = _open_raw(path)
        if container is None:
            raise VideoReadError(path, f"not a readable video ({_short(exc)})") from None
    if not container.streams.video:
        raw = _open_raw(path)
        if raw is not None:
            container.close()
            return raw
        kinds = sorted({s.type for s in container.streams})
        container.close()
        what = f"only {', '.join(kinds)} streams" if kinds else "no streams"
        raise VideoReadError(path, f"contains no video stream ({what})")
    return container


def _open_raw(path: Path):
    """The container of a raw-stream file opened with its extension's demuxer, or None."""
    import av

    fmt = RAW_STREAM_FORMATS.get(path.suffix.lower())
    if fmt is None:
        return None
    try:
        container = av.open(str(path), format=fmt, metadata_errors="ignore")
    except (av.FFmpegError, UnicodeDecodeError, OSError, ValueError):
        return None
    if not container.streams.video:
        container.close()
        return None
    logger.debug("%s: opened as a raw %s stream", path, fmt)
    return container


def _short(exc: BaseException) -> str:
    """The reason of a library error in a few words (FFmpeg's text without errno and file name)."""
    text = getattr(exc, "strerror", None) or str(exc).strip()
    text = text.splitlines()[0] if text else type(exc).__name__
    return text[:200]


#: The scan keeps one timestamp per frame; past this many frames (about 23 hours at 60 fps) a file
#: is refused rather than letting a crafted or endless stream grow the scan without bound.
MAX_SOURCE_FRAMES = 5_000_000


@dataclass
class _Scan:
    pts: list[int]  # presentation timestamps of all frames, sorted
    keyframes: list[int]  # sorted pts of keyframes
    time_base: Fraction
    truncated: bool
    #: The packets carry no timestamps (raw elementary streams): ``pts`` is the packet order, the
    #: time base one frame period, and frames can only be matched to indices by decoding in order.
    by_order: bool = False


def _nominal_rate(stream) -> Fraction:
    """The stream's frame rate as FFmpeg guesses it (codec timing info, else its demuxer default),
    or ``FALLBACK_FPS`` when there is no plausible one: the clock of a stream without timestamps."""
    for rate in (getattr(stream, "guessed_rate", None), stream.average_rate, getattr(stream, "base_rate", None)):
        try:
            value = Fraction(rate) if rate else Fraction(0)
        except (TypeError, ValueError):
            continue
        if 0 < value <= 1000:
            return value
    return Fraction(FALLBACK_FPS)


def _scan(path: Path, container, stream) -> _Scan:
    """Demux (not decode) the video stream: frame timestamps and keyframes, in constant memory.

    For a stream without packet timestamps the packet count is the frame count (the demuxer's
    parser splits a raw stream into one packet per picture).
    """
    import av

    pts: list[int] = []
    keys: list[int] = []
    truncated = False
    order = 0
    use_order = False
    first_key: int | None = None  # packet order of the first keyframe
    try:
        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            ts = packet.pts if packet.pts is not None else packet.dts
            if ts is None:
                use_order = True
            if use_order:
                ts = order
            pts.append(int(ts))
            if len(pts) > MAX_SOURCE_FRAMES:
                raise VideoReadError(path, f"has more than {MAX_SOURCE_FRAMES:,} frames; too long to sample "
                                           "(cut the part to analyse)")
            if packet.is_keyframe:
                keys.append(int(ts))
                if first_key is None:
                    first_key = order
            order += 1
    except (av.FFmpegError, OSError, ValueError) as exc:
        if not pts:
            raise VideoReadError(path, f"cannot read video packets ({_short(exc)})") from None
        logger.warning("%s: stopped reading packets after %d frames (%s)", path, len(pts), _short(exc))
        truncated = True
    declared = int(stream.frames or 0)  # the container's own count (mp4 sample table), 0 if unknown
    if declared and len(pts) < declared:
        logger.warning("%s: the file is cut short: %d of the %d frames it declares are present",
                       path, len(pts), declared)
        truncated = True
    if use_order:  # timestamps unusable: packet order for everything, one frame period per packet
        # A raw stream cut out of a longer one starts mid-GOP: decoders drop the pictures before the
        # first keyframe, so they are not counted (the decoder's output order is the index).
        lead = first_key or 0
        if lead:
            logger.info("%s: %d packets before the first keyframe cannot be decoded; not counted", path, lead)
        pts = list(range(len(pts) - lead))
        keys = [0]
    unique = sorted(set(pts))
    if not unique:
        raise VideoReadError(path, "video stream has zero frames")
    if use_order:
        tb = 1 / _nominal_rate(stream)
    else:
        tb = Fraction(stream.time_base) if stream.time_base is not None else Fraction(1, 1000)
    return _Scan(unique, sorted(set(keys)) or [unique[0]], tb, truncated, use_order)


def _to_rgb(frame, max_side: int) -> tuple[np.ndarray, float]:
    """Decode target frame to upright RGB, downscaled so its long side is at most ``max_side``."""
    w, h = frame.width, frame.height
    scale = 1.0
    if max_side and max(w, h) > max_side:
        scale = max_side / max(w, h)
    tw, th = max(2, int(round(w * scale))), max(2, int(round(h * scale)))
    if scale != 1.0:
        img = frame.to_ndarray(format="rgb24", width=tw, height=th)
    else:
        img = frame.to_ndarray(format="rgb24")
    rotation = _rotation(frame)
    if rotation:
        img = np.rot90(img, k=rotation // 90)
    return _off_heap(img), scale


#: Kept frames at least this large live in their own memory mapping (see :func:`_off_heap`).
OFF_HEAP_BYTES = 256 * 1024


def _off_heap(img: np.ndarray) -> np.ndarray:
    """A C-contiguous copy of ``img`` in its own anonymous memory mapping (large frames only).

    A window's decoded frames are freed while the next window's are decoded. From the heap, as
    numpy allocates them once glibc's adaptive mmap threshold has risen to a frame's size, freed
    frames stay resident: the reader's peak RSS was two windows' frames (+88 MB at 720p, T=32)
    instead of one. A mapping is returned to the system the moment its array is freed; the copy
    costs a memcpy per sampled frame, nothing next to decoding it.
    """
    if img.nbytes < OFF_HEAP_BYTES:
        return np.ascontiguousarray(img)
    import mmap

    buf = mmap.mmap(-1, img.nbytes)
    out = np.frombuffer(buf, dtype=img.dtype).reshape(img.shape)
    out[...] = img
    return out


def _rotation(frame) -> int:
    """Counter-clockwise rotation (0/90/180/270) a player applies to show the frame upright."""
    try:
        angle = frame.rotation  # degrees, counter-clockwise, from the display matrix
    except AttributeError:  # pragma: no cover - older PyAV
        return 0
    if not angle or not math.isfinite(angle):
        return 0
    return int(round(angle / 90.0)) % 4 * 90


_Decoded = dict[int, tuple[np.ndarray, float, int]]  # source index -> (rgb, scale, rotation)


def _is_positive(value, *, integer: bool) -> bool:
    """``value`` is a number > 0 (not a bool, not NaN); with ``integer``, a finite whole one."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        return False
    if integer:
        return math.isfinite(value) and float(value).is_integer() and value >= 1
    return value > 0


class VideoReader:
    """One video: scanned once (demux, no decode) on opening; then only the frames asked for are
    decoded, window by window.

    ``windows(window_s, max_windows)`` cuts the video into equal stretches; ``read(window, T)``
    samples T frames uniformly in one of them (``sample_indices`` within the stretch: first and
    last frame included, circular padding when the stretch has fewer than T frames);
    ``iter_read(windows, T)`` reads every analysed window in time order. Frames carry absolute
    source indices and timestamps (seconds from the video's first frame), and every read of one
    reader shares one :class:`VideoInfo`.

    A file that can seek is read window by window through seeks (a few groups of pictures per
    window). A raw elementary stream, or a file whose demuxer refuses to seek, is read by
    ``iter_read`` in ONE sequential decode pass for all windows, each window handed out as soon as
    its last sampled frame is decoded; ``read`` on such a file decodes from the start up to that
    window (call ``iter_read`` for several windows). Either way only sampled frames are converted
    to RGB, and memory is that of one window's frames whatever the video's length (the scan keeps
    one integer per frame).

    Raises:
        VideoReadError: (on opening) the file is missing, empty, not a video, has no video stream
            or zero frames; (on reading) none of the frames asked for can be decoded. One line,
            naming the file and the reason.
    """

    def __init__(self, path: str | Path, max_frame_side: int = StyleFusionConfig.max_frame_side):
        import av

        self.path = Path(path)
        self.max_frame_side = int(max_frame_side)
        _check_file(self.path)
        self._container = _open(self.path)
        try:
            stream = self._container.streams.video[0]
            self._codec = stream.codec_context.name if stream.codec_context else "unknown"
            scan = _scan(self.path, self._container, stream)
            average_rate = stream.average_rate
            ctx = stream.codec_context
            self._header_size = (int(ctx.width or 0), int(ctx.height or 0)) if ctx else (0, 0)
        except av.FFmpegError as exc:
            self._container.close()
            raise VideoReadError(self.path, f"cannot decode video ({_short(exc)})") from None
        except BaseException:
            self._container.close()
            raise
        self._stream = stream
        self._scan = scan
        #: Frames found by the scan (presentation order); source indices run 0..num_source-1.
        self.num_source = n = len(scan.pts)
        t0 = scan.pts[0]
        self._duration = float((scan.pts[-1] - t0) * scan.time_base)
        if scan.by_order:
            self._fps = float(1 / scan.time_base)
        else:
            self._fps = float((n - 1) / self._duration) if self._duration > 0 else float(average_rate or 0.0)
        # Extent in time-base ticks: first to last frame plus one (mean) frame period = n / fps.
        if n >= 2:
            self._span = Fraction(scan.pts[-1] - t0) * n / (n - 1)
        else:
            self._span = 1 / (Fraction(self._fps if self._fps > 0 else FALLBACK_FPS) * scan.time_base)
        self._seekable = not scan.by_order  # False too once a seek has been refused
        if not self._seekable:  # every pass opens its own container from the start
            self._container.close()
        self._info: VideoInfo | None = None
        self._ref: tuple[int, int] | None = None  # decoded (height, width) every read is brought to

    # -- what the video is ---------------------------------------------------------------------
    @property
    def duration(self) -> float:
        """Seconds from the first frame to the end of the last (first to last frame plus one mean
        frame period, ``num_frames / fps``); the windows cover exactly [0, duration]."""
        return float(self._span * self._scan.time_base)

    @property
    def info(self) -> VideoInfo:
        """The video's :class:`VideoInfo` (the one every :class:`Frames` of this reader carries).

        Sizes, rotation and ``decoded_scale`` come from a decoded frame: the first frame of the
        first read, or, when asked before any read, frame 0 (decoded for that alone).
        """
        if self._info is None:
            self._probe()
        return self._info

    def _probe(self) -> None:
        import av

        try:
            decoded = self._decode([0])
        except av.FFmpegError:
            decoded = {}
        if 0 in decoded:
            self._set_info(decoded[0])
            return
        # Frame 0 does not decode: the stream header's size (nothing to take a rotation from).
        w, h = self._header_size
        scale = self.max_frame_side / max(w, h) if self.max_frame_side and max(w, h) > self.max_frame_side else 1.0
        self._info = VideoInfo(str(self.path), w, h, self.num_source, self._fps, self.duration, 0,
                               self._codec, scale, self._scan.truncated)

    def _set_info(self, first: tuple[np.ndarray, float, int], full_size: bool = True) -> None:
        """The video's info from its first decoded frame; a frame read at another long side (the
        scan's) gives the sizes and rotation, and the full-size read's scale is computed as
        ``_to_rgb`` would, so no frame is decoded only to learn it."""
        img, scale, rotation = first
        h, w = img.shape[:2]
        width, height = int(round(w / scale)), int(round(h / scale))
        if full_size:
            self._ref = (h, w)
        else:
            m = self.max_frame_side
            scale = m / max(width, height) if m and max(width, height) > m else 1.0
        self._info = VideoInfo(str(self.path), width, height, self.num_source,
                               self._fps, self.duration, int(rotation), self._codec, scale,
                               self._scan.truncated)

    # -- windows -------------------------------------------------------------------------------
    def windows(self, window_s: float, max_windows: int | None = None) -> list[Window]:
        """The video cut into ``n = ceil(duration / window_s)`` stretches of equal length (one when
        the video is no longer than ``window_s``; ``math.inf`` gives one window over the whole
        video), boundaries as source-frame indices from the scanned timestamps.

        With more (non-empty) stretches than ``max_windows``, that many are analysed, spread evenly:
        ``np.linspace(0, n - 1, max_windows)`` rounded, so the first and the last are always in, and
        ``max_windows=1`` analyses the FIRST window. The others get ``analysed=False``.
        ``max_windows=None`` analyses all. A stretch in which no frame starts (a variable-frame-rate
        video with a pause longer than a window) is never analysed and not counted for the spread.

        Timestamps are rounded to the time base, so a video whose exact length is a multiple of
        ``window_s`` may measure one tick longer: up to one tick over a multiple still counts as
        that multiple (a stretch may exceed ``window_s`` by that tick, at most 1 ms for a
        millisecond time base).
        """
        if not _is_positive(window_s, integer=False):  # also NaN, strings
            raise ValueError(f"window_s must be a positive number of seconds, not {window_s!r}")
        if max_windows is not None and not _is_positive(max_windows, integer=True):
            raise ValueError(f"max_windows must be a positive integer or None, not {max_windows!r}")
        window_s = float(window_s)
        scan = self._scan
        span = self._span  # ticks
        if math.isinf(window_s):
            n = 1
        else:
            length = Fraction(float(window_s)) / scan.time_base  # ticks per window_s
            slack = 0 if scan.by_order else 1  # one tick of timestamp rounding
            n = max(1, math.ceil((span - slack) / length))
            if n > MAX_WINDOWS:
                raise ValueError(f"window_s={window_s!r} cuts this {self.duration:.0f}-second video into "
                                 f"{n:,} windows (more than {MAX_WINDOWS:,})")
        first, pts = scan.pts[0], scan.pts
        starts = [0] + [bisect.bisect_left(pts, first + math.ceil(k * span / n)) for k in range(1, n)]
        stops = starts[1:] + [self.num_source]
        bounds = [float(k * span / n * scan.time_base) for k in range(n + 1)]
        nonempty = [k for k in range(n) if stops[k] > starts[k]]
        if max_windows is None or len(nonempty) <= max_windows:
            chosen = set(nonempty)
        else:
            picks = np.unique(np.round(np.linspace(0, len(nonempty) - 1, int(max_windows))).astype(np.int64))
            chosen = {nonempty[int(i)] for i in picks}
        return [Window(k, starts[k], stops[k], bounds[k], bounds[k + 1], k in chosen) for k in range(n)]

    def _plan(self, window: Window, num_frames: int) -> tuple[np.ndarray, list[int]]:
        """Sampled absolute source indices of ``window`` and their sorted distinct values."""
        if not isinstance(window, Window):
            raise TypeError(f"expected a Window, not {type(window).__name__}")
        if not 0 <= window.start < window.stop <= self.num_source:
            raise ValueError(f"window {window.index} (frames {window.start}..{window.stop}) has no frames "
                             f"of this {self.num_source}-frame video")
        if not _is_positive(num_frames, integer=True):
            raise ValueError(f"num_frames must be a positive integer, not {num_frames!r}")
        indices = sample_indices(window.stop - window.start, int(num_frames)) + window.start
        return indices, sorted({int(i) for i in indices})

    # -- reading -------------------------------------------------------------------------------
    def read(self, window: Window, num_frames: int) -> Frames:
        """``num_frames`` frames sampled uniformly within ``window`` (as :func:`sample_indices`
        over its source frames, with circular padding), with absolute source indices and
        timestamps. Frames that cannot be decoded are filled from the nearest decoded one.

        Raises:
            VideoReadError: none of the window's sampled frames can be decoded.
            ValueError: the window holds no frame of this video, or ``num_frames`` < 1.
        """
        import av

        indices, wanted = self._plan(window, num_frames)
        try:
            decoded = self._decode(wanted)
        except av.FFmpegError as exc:
            raise VideoReadError(self.path, f"cannot decode video ({_short(exc)})") from None
        frames = self._assemble(indices, wanted, decoded)
        if frames is None:
            raise VideoReadError(self.path, self._undecodable(window))
        return frames

    def iter_read(self, windows: Iterable[Window], num_frames: int) -> Iterator[tuple[Window, Frames]]:
        """``(window, frames)`` for every analysed window of ``windows``, in time order.

        A seekable file is read window by window; a raw stream or a file that cannot seek is read
        in ONE sequential pass for all of them, each window yielded as soon as its last sampled
        frame is decoded (memory: one window's frames). A window none of whose sampled frames can
        be decoded is skipped with a warning and marked ``analysed = False`` (so a timeline built
        from the list says so); when no window at all can be decoded, VideoReadError is raised.
        ``windows`` are those of one :meth:`windows` call (a window listed twice is read once).
        Arguments are checked at once, before the first frame is decoded. Stopping early (leaving
        the loop) closes the pass.
        """
        todo = sorted({w.index: w for w in windows if w.analysed}.values(), key=lambda w: w.index)
        plans = [(w, *self._plan(w, num_frames)) for w in todo]
        return self._iter_windows(plans)

    def _iter_windows(self, plans: list) -> Iterator[tuple[Window, Frames]]:
        yielded = 0
        for w, frames in self._iter(plans, self.max_frame_side):
            if frames is None:
                self._skip(w)
                continue
            yielded += 1
            yield w, frames
            del frames  # not held while the next window is decoded
        if plans and not yielded:
            raise VideoReadError(self.path, "no frame could be decoded (corrupt data or unsupported codec)")

    def iter_frames(self, plans: Iterable[tuple[Any, np.ndarray]],
                    max_side: int | None = None) -> Iterator[tuple[Any, Frames | None]]:
        """``(key, frames)`` for each ``(key, source_indices)`` of ``plans``: the frames at those
        indices (any order, repeats allowed), decoded with a long side of at most ``max_side``
        (default: the reader's ``max_frame_side``), or None when none of them can be decoded.

        Plans are read in the order of their last frame; a file that cannot seek is read in ONE
        sequential pass for all of them. The front end reads its scan (small frames, a few a
        second) and then each judged span's frames through this one door.
        """
        max_side = self.max_frame_side if max_side is None else int(max_side)
        todo = []
        for key, indices in plans:
            indices = np.asarray(indices, dtype=np.int64)
            if indices.size == 0 or indices.min() < 0 or indices.max() >= self.num_source:
                raise ValueError(f"frame indices of plan {key!r} outside this {self.num_source}-frame video")
            todo.append((key, indices, sorted({int(i) for i in indices})))
        todo.sort(key=lambda p: p[2][-1])
        return self._iter(todo, max_side)

    def _iter(self, plans: list, max_side: int) -> Iterator[tuple[Any, Frames | None]]:
        import av

        rest = deque(plans)
        while rest and self._seekable:
            key, indices, wanted = rest[0]
            try:
                decoded = self._decode_seek(wanted, max_side)
            except av.FFmpegError as exc:
                raise VideoReadError(self.path, f"cannot decode video ({_short(exc)})") from None
            if decoded is None:  # the demuxer refuses to seek: the rest in one sequential pass
                break
            rest.popleft()
            yield key, self._assemble(indices, wanted, decoded, max_side)
        if rest:
            yield from self._iter_pass(list(rest), max_side)

    def _iter_pass(self, plans: list, max_side: int) -> Iterator[tuple[Any, Frames | None]]:
        """One sequential decode for all ``plans``; each plan's Frames as soon as it is complete."""
        import av

        every = sorted(set().union(*(wanted for _, _, wanted in plans)))
        pending = deque(plans)
        store: _Decoded = {}  # decoded frames that a plan not yet handed out needs
        container = _open(self.path)
        frames_iter = None

        def take(wanted: list[int]) -> _Decoded:
            got = {i: store[i] for i in wanted if i in store}
            needed = set().union(*(w for _, _, w in pending)) if pending else set()
            for i in wanted:
                if i not in needed:
                    store.pop(i, None)
            return got

        try:
            stream = container.streams.video[0]
            frames_iter = _decode_sequential(self.path, container, stream, self._scan, every, max_side)
            for j, item in frames_iter:
                store[j] = item
                # A plan is complete once the decoder has reached its last frame (a frame it
                # skipped is filled from a neighbour, as in a seeking read).
                while pending and pending[0][2][-1] <= j:
                    key, indices, wanted = pending.popleft()
                    yield key, self._assemble(indices, wanted, take(wanted), max_side)
            while pending:  # the decoder stopped early: what it gave
                key, indices, wanted = pending.popleft()
                yield key, self._assemble(indices, wanted, take(wanted), max_side)
        except av.FFmpegError as exc:
            raise VideoReadError(self.path, f"cannot decode video ({_short(exc)})") from None
        finally:
            if frames_iter is not None:
                frames_iter.close()
            container.close()

    def _skip(self, window: Window) -> None:
        logger.warning("%s: %s; not analysed", self.path, self._undecodable(window))
        window.analysed = False

    def _undecodable(self, window: Window) -> str:
        if window.start == 0 and window.stop == self.num_source:
            return "no frame could be decoded (corrupt data or unsupported codec)"
        return (f"no frame of window {window.index} ({window.start_s:.1f}-{window.end_s:.1f} s) could be "
                "decoded (corrupt data)")

    def _decode(self, wanted: list[int]) -> _Decoded:
        """The frames at ``wanted``: by seeking, else by one pass from the start up to the last."""
        decoded = self._decode_seek(wanted) if self._seekable else None
        if decoded is None:
            container = _open(self.path)
            frames_iter = None
            try:
                frames_iter = _decode_sequential(self.path, container, container.streams.video[0], self._scan,
                                                 wanted, self.max_frame_side)
                decoded = dict(frames_iter)
            finally:
                if frames_iter is not None:
                    frames_iter.close()
                container.close()
        return decoded

    def _decode_seek(self, wanted: list[int], max_side: int | None = None) -> _Decoded | None:
        """The frames at ``wanted`` through seeks; None (and no more seeking) if the demuxer refuses."""
        try:
            return _decode_targets(self.path, self._container, self._stream, self._scan, wanted,
                                   self.max_frame_side if max_side is None else max_side)
        except _NotSeekable as exc:
            logger.info("%s: the demuxer cannot seek (%s); decoding once from the start", self.path, exc)
            self._seekable = False
            self._container.close()
            return None

    def _assemble(self, indices: np.ndarray, wanted: list[int], decoded: _Decoded,
                  max_side: int | None = None) -> Frames | None:
        """Frames for ``indices`` from ``decoded`` (missing ones from the nearest decoded frame of
        the same read, all brought to one size: the reader's for full-size reads, the first
        decoded frame's for a read at another ``max_side``); None when nothing was decoded."""
        if not decoded:
            return None
        missing = [i for i in wanted if i not in decoded]
        if missing:
            logger.warning("%s: %d sampled frames could not be decoded; using the nearest decoded frame",
                           self.path, len(missing))
            have = sorted(decoded)
            for i in missing:
                j = min(have, key=lambda k: abs(k - i))
                decoded[i] = decoded[j]
        own_size = max_side is not None and max_side != self.max_frame_side
        if self._ref is None and not own_size:
            self._set_info(decoded[wanted[0]])
        elif self._info is None:
            self._set_info(decoded[wanted[0]], full_size=False)
        h0, w0 = decoded[wanted[0]][0].shape[:2] if own_size else self._ref
        # Copied into the output one by one, each decoded frame let go after its last use, so the
        # read peaks at one window's frames (plus one), not two.
        last_use = {int(i): k for k, i in enumerate(indices)}
        images = np.empty((len(indices), h0, w0, 3), dtype=decoded[wanted[0]][0].dtype)
        for k, i in enumerate(indices):
            i = int(i)
            img = decoded[i][0]
            if img.shape[:2] != (h0, w0):  # resolution changes mid-stream: the first read's size
                import cv2

                img = cv2.resize(img, (w0, h0), interpolation=cv2.INTER_AREA)
            images[k] = img
            if last_use[i] == k:
                del decoded[i]
        scan = self._scan
        t0 = scan.pts[0]
        timestamps = np.array([float((scan.pts[int(i)] - t0) * scan.time_base) for i in indices],
                              dtype=np.float64)
        info = self.info
        scale = w0 / info.width if own_size and info.width else None
        return Frames(images, indices, timestamps, info, scale)

    # -- lifetime ------------------------------------------------------------------------------
    def close(self) -> None:
        self._container.close()  # closing twice is harmless

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_frames(path: str | Path, num_frames: int = 32,
                max_frame_side: int = StyleFusionConfig.max_frame_side) -> Frames:
    """Sample ``num_frames`` frames uniformly over the whole video (one window over all of it).

    Frames whose long side exceeds ``max_frame_side`` (the config field of that name) are
    downscaled while decoding; boxes are always reported in source pixels.

    Frames are reached by seeking when the file has packet timestamps and its demuxer can seek;
    otherwise (raw elementary streams, demuxers without an index) by one sequential decode pass
    that keeps only the sampled frames. Either way memory does not grow with the video's length.

    Raises:
        VideoReadError: the file is missing, empty, not a video, has no video stream, has zero
            frames, or none of its frames can be decoded. The message names the file and the reason.
    """
    with VideoReader(path, max_frame_side) as reader:
        return reader.read(reader.windows(math.inf)[0], num_frames)


T = TypeVar("T")

_ITEM, _END, _ERROR = "item", "end", "error"


class Prefetch(Iterator[T], Generic[T]):
    """The items of ``source``, each one produced by a worker thread while the consumer works on
    the previous one.

    Used around :meth:`VideoReader.iter_read` by :func:`stylefusion.people.analyse_people`: window
    k+1 is decoded while the faces of window k are detected. ``depth`` items at most are produced
    and not yet taken (the worker asks ``source`` for the next item only once the consumer has
    taken the previous one), so with the default of 1 at most one window of frames is held ahead
    of the consumer. An exception raised by ``source`` is raised by ``next()`` at the position where
    it happened (the items before it are handed out first), with its traceback.

    :meth:`close` (also on leaving a ``with`` block, whatever the reason, and when the consumer
    drops the object) stops the worker: an item being produced is finished, then dropped, the
    worker closes ``source`` (a generator's ``finally`` runs in the worker) and ``close`` joins the
    thread, so nothing of ``source`` runs after it returns. Close it before what ``source`` reads
    (the :class:`VideoReader`) is closed.

    Example:
        >>> with VideoReader(path) as reader, Prefetch(reader.iter_read(windows, 32)) as items:  # doctest: +SKIP
        ...     for window, frames in items:
        ...         detect(frames)  # the next window decodes meanwhile
    """

    def __init__(self, source: Iterable[T], depth: int = 1, name: str = "stylefusion-prefetch"):
        if not isinstance(depth, int) or depth < 1:
            raise ValueError(f"depth must be a positive integer, not {depth!r}")
        self._items: queue.Queue = queue.Queue(maxsize=depth)  # never full: ``room`` admits depth items
        self._room = threading.Semaphore(depth)  # items the worker may produce before one is taken
        self._stop = threading.Event()
        self._close_error: list[BaseException] = []
        self._done = False
        # The worker holds the shared pieces, not self: a consumer that drops this object without
        # closing it lets it be collected, and __del__ then stops the worker.
        self._thread = threading.Thread(
            target=_produce, args=(iter(source), self._items, self._room, self._stop, self._close_error),
            name=name, daemon=True)
        self._thread.start()

    def __iter__(self) -> Prefetch[T]:
        return self

    def __next__(self) -> T:
        if self._done:
            raise StopIteration
        kind, value = self._items.get()
        if kind == _ITEM:
            self._room.release()  # taken: the worker may produce the next one now
            return value
        self._done = True
        self._thread.join()
        if kind == _ERROR:
            try:
                raise value
            finally:
                del value  # no reference cycle through the traceback
        raise StopIteration

    def close(self) -> None:
        """Stop the worker and join it (idempotent). Raises what closing ``source`` raised, if anything."""
        self._done = True
        self._stop.set()
        self._room.release()  # wake a worker waiting for room
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()
        _drain(self._items)  # an item produced and never taken
        if self._close_error:
            raise self._close_error.pop()

    def __enter__(self) -> Prefetch[T]:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        stop = getattr(self, "_stop", None)  # None: __init__ failed before the worker existed
        if stop is not None and not stop.is_set():
            stop.set()  # dropped without close(): let the worker end (nothing to join from here)
            self._room.release()


def _produce(source: Iterator, items: queue.Queue, room: threading.Semaphore, stop: threading.Event,
             close_error: list[BaseException]) -> None:
    """The worker of :class:`Prefetch`: one item per unit of room until the end, an error or stop."""
    try:
        while True:
            room.acquire()
            if stop.is_set():
                return
            try:
                item = next(source)
            except StopIteration:
                items.put((_END, None))
                return
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
                items.put((_ERROR, exc))
                return
            items.put((_ITEM, item))
            del item
    finally:
        close = getattr(source, "close", None)
        if close is not None:
            try:
                close()
            except BaseException as exc:  # noqa: BLE001 - raised by Prefetch.close
                close_error.append(exc)
        if stop.is_set():
            _drain(items)


def _drain(items: queue.Queue) -> None:
    while True:
        try:
            items.get_nowait()
        except queue.Empty:
            return


def _decode_targets(path: Path, container, stream, scan: _Scan, wanted: list[int],
                    max_side: int) -> dict[int, tuple[np.ndarray, float, int]]:
    """Decode the frames at the sorted source indices ``wanted``.

    Decoding continues forward while the next wanted frame is in the current group of pictures and
    seeks to the next wanted frame's keyframe otherwise. A wanted frame that cannot be reached
    (damaged data, a decoder that drops it) is left out; the caller fills it from its neighbour.

    Raises:
        _NotSeekable: the demuxer refused a seek; the caller decodes sequentially instead.
    """
    import av

    out: dict[int, tuple[np.ndarray, float, int]] = {}
    pts_of = scan.pts

    def keyframe_before(p: int) -> int:
        return scan.keyframes[max(0, bisect.bisect_right(scan.keyframes, p) - 1)]

    errors = [0]  # packets that failed to decode, over the whole read (bounded: see _tolerant_decode)
    frames_iter = None
    pos: int | None = None  # pts of the last decoded frame
    sought_for = -1  # the wanted position we last sought for (never seek twice for one target)
    k = 0
    while k < len(wanted):
        target = pts_of[wanted[k]]
        key = keyframe_before(target)
        if frames_iter is None or pos is None or pos >= target or pos < key:
            if sought_for == k:
                k += 1  # already sought for it and could not decode it
                continue
            try:
                container.seek(int(key), stream=stream, backward=True, any_frame=False)
            except av.FFmpegError as exc:
                # One sequential pass (bounded: one decode of the file) beats decoding from the
                # start again for every later target.
                raise _NotSeekable(_short(exc)) from None
            frames_iter = _tolerant_decode(path, container, stream, errors)
            pos, sought_for = None, k
        try:
            for frame in frames_iter:
                if frame.pts is None:
                    continue
                pos = int(frame.pts)
                while k < len(wanted) and pts_of[wanted[k]] < pos:
                    k += 1  # the decoder skipped it
                if k < len(wanted) and pts_of[wanted[k]] == pos:
                    out[wanted[k]] = (*_to_rgb(frame, max_side), _rotation(frame))
                    k += 1
                if k >= len(wanted):
                    break
                if keyframe_before(pts_of[wanted[k]]) > pos and sought_for != k:
                    break  # the next wanted frame is in a later GOP: seek to it
                # (a seek for it that landed short of its keyframe, as yuv4mpeg's does, reads on)
            else:
                frames_iter = None  # the decoder ran out
        except (av.FFmpegError, OSError, ValueError) as exc:
            logger.warning("%s: decoding error near pts %s (%s)", path, pos, _short(exc))
            frames_iter = None
    if errors[0]:
        logger.warning("%s: %d damaged packets were skipped while decoding", path, errors[0])
    return out


class _NotSeekable(Exception):
    """The demuxer refuses every seek (no index): the caller falls back to a sequential pass."""


def _decode_sequential(path: Path, container, stream, scan: _Scan, wanted: list[int],
                       max_side: int) -> Iterator[tuple[int, tuple[np.ndarray, float, int]]]:
    """Decode from the start once, yielding ``(index, (rgb, scale, rotation))`` for the frames at
    the sorted source indices ``wanted``, in presentation order, as soon as each is decoded.

    For files that cannot seek. Only the wanted frames are converted (and downscaled) as they are
    decoded; every other frame is dropped at once, and nothing is kept here, so memory is what the
    caller keeps of the yielded frames, not the video's. A frame is matched to its source index by
    its timestamp when the scan has timestamps, else by its position in the decoder's output (which
    is presentation order). The pass stops after the last wanted frame; a decoding error ends it. A
    wanted frame the decoder never gives is not yielded: the caller fills it from a neighbour.
    """
    import av

    if not wanted:
        return
    want = set(wanted)
    done: set[int] = set()
    last = wanted[-1]
    errors = [0]
    index = -1  # source index of the last decoded frame
    count = 0  # frames the decoder gave
    try:
        for frame in _tolerant_decode(path, container, stream, errors):
            count += 1
            if scan.by_order or frame.pts is None:
                index += 1
            else:
                j = bisect.bisect_left(scan.pts, int(frame.pts))
                if j >= len(scan.pts) or scan.pts[j] != int(frame.pts):
                    continue  # a timestamp the scan did not see
                index = j
            if index in want and index not in done:
                done.add(index)
                yield index, (*_to_rgb(frame, max_side), _rotation(frame))
            if index >= last:
                break
    except (av.FFmpegError, OSError, ValueError) as exc:
        logger.warning("%s: decoding stopped after %d frames (%s)", path, count, _short(exc))
    if scan.by_order and index < last:
        logger.warning("%s: the decoder gave %d frames for %d packets", path, count, len(scan.pts))
    if errors[0]:
        logger.warning("%s: %d damaged packets were skipped while decoding", path, errors[0])


#: A read gives up decoding after this many damaged packets (a stream of garbage costs bounded time).
MAX_DECODE_ERRORS = 200


def _tolerant_decode(path: Path, container, stream, errors: list[int]):
    """Frames from the current demux position on; a packet that fails to decode is skipped.

    ``container.decode`` stops at the first damaged packet, so one corrupt stretch in the middle of
    a long group of pictures would lose every later frame of that group (and each later sampled
    frame would seek back and fail again). Decoding packet by packet lets the decoder resynchronise
    on the next decodable packet, as players do. Demuxing errors (a truncated file) end the stream;
    more than ``MAX_DECODE_ERRORS`` damaged packets in one read raise the last error.
    """
    import av

    for packet in container.demux(stream):
        try:
            frames = packet.decode()
        except (av.FFmpegError, ValueError) as exc:
            errors[0] += 1
            if errors[0] > MAX_DECODE_ERRORS:
                raise
            logger.debug("%s: skipped a damaged packet at pts %s (%s)", path, packet.pts, _short(exc))
            continue
        yield from frames


def probe_duration(path: str | Path) -> float | None:
    """Duration in seconds from the container header, without decoding; None when unknown.

    Cheap enough to check an upload against a length limit before reading it. Unreadable files
    give None: :func:`read_frames` is the one that explains what is wrong with them.
    """
    import av

    try:
        with av.open(str(path)) as container:
            if container.duration:
                return container.duration / av.time_base
            stream = container.streams.video[0] if container.streams.video else None
            if stream is not None and stream.duration and stream.time_base:
                return float(stream.duration * stream.time_base)
    except Exception:  # noqa: BLE001 - any failure means "unknown", never a crash
        return None
    return None
