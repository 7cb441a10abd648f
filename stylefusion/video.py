"""Read a video and sample T frames uniformly over its whole length (the report's first stage).

Why PyAV and two passes: uniform sampling needs the number of frames, which container headers
often get wrong (variable frame rate, edited files, missing counts). The first pass demuxes packets
only — no decoding — to learn every frame's presentation timestamp and where the keyframes are.
The second pass decodes only what the sampled frames need: it seeks to the keyframe before a
sampled frame when that frame lies in a later group of pictures, so a 10-minute 720p video costs
about as much memory as a 10-second one and only a few groups of pictures are decoded.

A video with fewer than T frames is padded circularly (frame order 0, 1, ..., N-1, 0, 1, ...), as in
the report. Every sampled frame keeps its source index (its position in presentation order) and its
timestamp. Rotation metadata is applied, so frames are upright as a player shows them.
"""

from __future__ import annotations

import bisect
import logging
import math
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from stylefusion.errors import VideoReadError

logger = logging.getLogger(__name__)

#: Frames whose long side is larger than this are downscaled while decoding (a 4K RGB frame is
#: 25 MB; 32 of them would dominate memory). Boxes are always reported in source pixels.
DEFAULT_MAX_FRAME_SIDE = 1920


@dataclass
class VideoInfo:
    """What the video is, as read from its stream (sizes as displayed, i.e. after rotation)."""

    path: str
    width: int
    height: int
    num_frames: int
    fps: float
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
    import av

    try:
        container = av.open(str(path), metadata_errors="ignore")
    except (av.FFmpegError, UnicodeDecodeError, OSError, ValueError) as exc:
        raise VideoReadError(path, f"not a readable video ({_short(exc)})") from None
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams})
        container.close()
        what = f"only {', '.join(kinds)} streams" if kinds else "no streams"
        raise VideoReadError(path, f"contains no video stream ({what})")
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


def _scan(path: Path, container, stream) -> _Scan:
    """Demux (not decode) the video stream: frame timestamps and keyframes, in constant memory."""
    import av

    pts: list[int] = []
    keys: list[int] = []
    truncated = False
    order = 0
    use_order = False
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
    if use_order:  # timestamps unusable: fall back to packet order for everything
        pts = list(range(len(pts)))
        keys = [0]
    unique = sorted(set(pts))
    if not unique:
        raise VideoReadError(path, "video stream has zero frames")
    tb = stream.time_base if stream.time_base is not None else Fraction(1, 1000)
    return _Scan(unique, sorted(set(keys)) or [unique[0]], Fraction(tb), truncated)


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
        img = np.ascontiguousarray(np.rot90(img, k=rotation // 90))
    return img, scale


def _rotation(frame) -> int:
    """Counter-clockwise rotation (0/90/180/270) a player applies to show the frame upright."""
    try:
        angle = frame.rotation  # degrees, counter-clockwise, from the display matrix
    except AttributeError:  # pragma: no cover - older PyAV
        return 0
    if not angle or not math.isfinite(angle):
        return 0
    return int(round(angle / 90.0)) % 4 * 90


def read_frames(path: str | Path, num_frames: int = 32,
                max_frame_side: int = DEFAULT_MAX_FRAME_SIDE) -> Frames:
    """Sample ``num_frames`` frames uniformly over the whole video.

    Raises:
        VideoReadError: the file is missing, empty, not a video, has no video stream, has zero
            frames, or none of its frames can be decoded. The message names the file and the reason.
    """
    import av

    path = Path(path)
    _check_file(path)
    container = _open(path)
    try:
        stream = container.streams.video[0]
        codec = stream.codec_context.name if stream.codec_context else "unknown"
        scan = _scan(path, container, stream)
        n = len(scan.pts)
        indices = sample_indices(n, num_frames)
        wanted = sorted(set(int(i) for i in indices))
        decoded = _decode_targets(path, container, stream, scan, wanted, max_frame_side)
    except av.FFmpegError as exc:
        raise VideoReadError(path, f"cannot decode video ({_short(exc)})") from None
    finally:
        container.close()
    if not decoded:
        raise VideoReadError(path, "no frame could be decoded (corrupt data or unsupported codec)")
    missing = [i for i in wanted if i not in decoded]
    if missing:
        logger.warning("%s: %d sampled frames could not be decoded; using the nearest decoded frame",
                       path, len(missing))
        have = sorted(decoded)
        for i in missing:
            j = min(have, key=lambda k: abs(k - i))
            decoded[i] = decoded[j]
    shapes = {decoded[i][0].shape for i in wanted}
    if len(shapes) > 1:  # resolution changes mid-stream: bring all frames to the first frame's size
        import cv2

        h0, w0 = decoded[wanted[0]][0].shape[:2]
        for i in wanted:
            img, s, r = decoded[i]
            if img.shape[:2] != (h0, w0):
                decoded[i] = (cv2.resize(img, (w0, h0), interpolation=cv2.INTER_AREA), s, r)
    images = np.stack([decoded[int(i)][0] for i in indices])
    scale = decoded[wanted[0]][1]
    t0 = scan.pts[0]
    timestamps = np.array([float((scan.pts[int(i)] - t0) * scan.time_base) for i in indices], dtype=np.float64)
    duration = float((scan.pts[-1] - t0) * scan.time_base)
    fps = float((n - 1) / duration) if duration > 0 else float(stream.average_rate or 0.0)
    h, w = images.shape[1:3]
    info = VideoInfo(str(path), int(round(w / scale)), int(round(h / scale)), n, fps, duration,
                     int(decoded[wanted[0]][2]), codec, scale, scan.truncated)
    return Frames(images, indices, timestamps, info)


def _decode_targets(path: Path, container, stream, scan: _Scan, wanted: list[int],
                    max_side: int) -> dict[int, tuple[np.ndarray, float, int]]:
    """Decode the frames at the sorted source indices ``wanted``.

    Decoding continues forward while the next wanted frame is in the current group of pictures and
    seeks to the next wanted frame's keyframe otherwise. A wanted frame that cannot be reached
    (damaged data, a decoder that drops it) is left out; the caller fills it from its neighbour.
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
            except av.FFmpegError:
                container.seek(0, stream=stream, backward=True, any_frame=False)
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
                if k >= len(wanted) or keyframe_before(pts_of[wanted[k]]) > pos:
                    break  # done, or the next wanted frame is in a later GOP: seek to it
            else:
                frames_iter = None  # the decoder ran out
        except (av.FFmpegError, OSError, ValueError) as exc:
            logger.warning("%s: decoding error near pts %s (%s)", path, pos, _short(exc))
            frames_iter = None
    if errors[0]:
        logger.warning("%s: %d damaged packets were skipped while decoding", path, errors[0])
    return out


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
