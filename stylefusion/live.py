"""Live: watch a stream or a webcam and answer per person while it plays (issue 24).

A stream is the question :meth:`~stylefusion.detector.StyleFusionDetector.detect` answers, asked
again as each stretch completes. Nothing here decides anything new: each completed window is handed
to the same front end (:func:`stylefusion.people.analyse_people`, through :class:`WindowReader`, a
reader over the window's frames held in memory) and the same ``forward`` and ``postprocess``, so a
window of a stream gets the answer the same frames would get in a file.

Pieces, in the order frames meet them:

1. :func:`open_source` opens what FFmpeg (PyAV) opens: a URL (RTSP, RTMP, HLS, HTTP, TCP/UDP
   MPEG-TS), a webcam (V4L2, AVFoundation), ``-`` for standard input, a file (one still being
   written with ``follow``). A source that does not answer fails within the connect timeout, in one
   line (:class:`StreamError`).
2. A decode thread (:func:`watch`) turns frames into RGB arrays with a stream time and pushes them
   into a :class:`LiveSession`. Frames are kept at most ``2 T`` per window (an even grid in time),
   at most ``config.max_frame_side`` on their long side.
3. :class:`LiveSession` cuts rolling windows of ``window_s`` seconds every ``hop_s`` seconds. A
   completed window waits in a queue of ``max_queue`` windows; one worker thread judges them.
   **Bounded**: when a window completes while the queue is full, the oldest waiting one is skipped,
   and a window whose turn comes more than ``max_lag_s`` behind the newest frame is skipped too;
   each skip is a record ("window 0:40–0:50 not analysed: 6.2 s behind"). Memory is that of the
   frames of at most ``max_queue + 2`` windows, whatever the length of the stream.
4. Each window's people get stream-wide ids (:class:`PeopleRegistry`): a person still on screen
   keeps their id (their face continues where it was, no cut between), one who comes back is known
   again by the identity descriptor the front end already computes
   (:func:`stylefusion.faces.identity_descriptor`, ``config.reid_min_similarity``), never two
   people on screen together under one id. When unsure, a new id.
5. Records (:class:`LiveRecord`): per window and person ``judged`` (label, p_fake, the decision
   record), ``not_enough_yet`` (seen for less than a window needs: an explicit state, never a
   verdict), ``not_judged`` (beyond ``max_people``), ``no_face``, ``skipped``, ``error`` and finally
   ``ended`` with the :class:`LiveSummary` (people, windows judged and skipped, latency p50/p95).

The CLI (``stylefusion watch``), the API (``detector.watch``) and the app's Live tab are thin layers
over :func:`watch` and :class:`LiveSession`.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from stylefusion.errors import VideoReadError
from stylefusion.faces import _link_cost, cut_distance, frame_signature
from stylefusion.results import Label, most_suspicious
from stylefusion.video import Frames, VideoInfo, Window

logger = logging.getLogger(__name__)

#: Windows longer than this are cut to it by default: an answer every 10 s at the latest (the
#: checkpoint's ``window_s`` is 15 s by default).
MAX_DEFAULT_WINDOW_S = 10.0
#: Frames kept per window: at most this many times T, on an even grid in time. The front end samples
#: T frames across each person's span; 2 T keep a span of half the window at T distinct frames, and
#: a 10-second 720p window at 64 frames (180 MB) instead of 300 at 30 fps.
FRAMES_PER_T = 2
#: Known people remembered at most (the least recently seen are forgotten first).
MAX_KNOWN_PEOPLE = 256
#: A person seen within this many seconds of the end of the previous window, and whose face starts
#: where it was (the tracker's geometric gates) without a cut in between, keeps their id even when
#: the descriptor is unsure.
CONTINUITY_S = 1.5
#: Records kept for a caller that does not poll (the oldest are dropped beyond this, with a warning).
MAX_RECORDS = 4096
#: Latencies kept for the percentiles (the most recent ones).
MAX_LATENCIES = 10_000
#: Consecutive packets that fail to decode before the stream is given up as unreadable.
MAX_BAD_PACKETS = 200
#: Record kinds.
KINDS = ("judged", "not_enough_yet", "not_judged", "no_face", "skipped", "error", "ended")


class StreamError(VideoReadError):
    """A live source cannot be opened or read: it does not answer, has no video track, ..."""


def clock(seconds: float | None) -> str:
    """Stream time as a player shows it: ``m:ss`` (``h:mm:ss`` from an hour)."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    s = max(0, int(math.floor(seconds + 1e-6)))
    h, m, s = s // 3600, s // 60 % 60, s % 60
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _stretch(start_s: float, end_s: float) -> str:
    return f"{clock(start_s)}–{clock(end_s)}"


# --- records -------------------------------------------------------------------------------------
@dataclass
class LiveSummary:
    """What a session did: people seen, windows judged and skipped, latency percentiles, how it ended."""

    people: int
    windows_judged: int
    windows_skipped: int
    latency_p50: float | None
    latency_p95: float | None
    ended: str
    stream_s: float = 0.0  # stream time covered (first to last frame)
    processing_s: float = 0.0  # worker seconds spent judging windows
    windows_failed: int = 0  # windows whose analysis raised (each an "error" record)

    @property
    def realtime_factor(self) -> float | None:
        """Seconds of processing per second of stream (below 1: it keeps up)."""
        return self.processing_s / self.stream_s if self.stream_s > 0 else None

    def to_dict(self) -> dict[str, Any]:
        rtf = self.realtime_factor
        return {"people": int(self.people), "windows_judged": int(self.windows_judged),
                "windows_skipped": int(self.windows_skipped), "windows_failed": int(self.windows_failed),
                "latency_p50": _round(self.latency_p50), "latency_p95": _round(self.latency_p95),
                "stream_s": round(float(self.stream_s), 3), "processing_s": round(float(self.processing_s), 3),
                "realtime_factor": _round(rtf), "ended": self.ended}

    def line(self) -> str:
        lat = ("latency p50 %.1f s, p95 %.1f s" % (self.latency_p50, self.latency_p95)
               if self.latency_p50 is not None else "no latency measured")
        failed = f", {self.windows_failed} failed" if self.windows_failed else ""
        people = f"{self.people} {'person' if self.people == 1 else 'people'}"
        return (f"{self.ended}: {people}, {self.windows_judged} windows judged, {self.windows_skipped} skipped"
                f"{failed}; {lat}")


@dataclass
class LiveRecord:
    """One answer of a live session: a person in a window, a window skipped, or the end.

    ``kind``: ``judged`` (``label``, ``p_fake`` and ``decision`` as a segment of a
    :class:`~stylefusion.results.DetectionResult`; ``untrained`` and ``unsupported`` pass through),
    ``not_enough_yet`` (the person is seen for less than a window needs: no verdict), ``not_judged``
    (beyond ``max_people``), ``no_face`` (nobody to judge in the window; ``message`` says why),
    ``skipped`` (the window was not analysed: the networks were behind), ``error`` (the window's
    analysis failed; the stream goes on), ``ended`` (the last record; ``summary``).
    """

    kind: str
    window: int
    start_s: float
    end_s: float
    person: int | None = None
    label: str | None = None
    p_fake: float | None = None
    decision: dict | None = None
    latency_s: float | None = None
    message: str = ""
    crop: np.ndarray | None = field(default=None, repr=False)  # one face crop (H, W, 3) uint8, for display
    seen_s: float | None = None  # seconds the person is on screen in the window
    processing_s: float | None = None  # worker seconds spent on the window
    summary: LiveSummary | None = None  # the "ended" record's

    def to_dict(self) -> dict[str, Any]:
        """The JSON line of the CLI (no crop)."""
        out = {"kind": self.kind, "window": int(self.window), "start_s": round(float(self.start_s), 3),
               "end_s": round(float(self.end_s), 3), "person": None if self.person is None else int(self.person),
               "label": self.label, "p_fake": None if self.p_fake is None else float(self.p_fake),
               "decision": self.decision, "latency_s": _round(self.latency_s), "message": self.message,
               "seen_s": _round(self.seen_s), "processing_s": _round(self.processing_s)}
        if self.summary is not None:
            out["summary"] = self.summary.to_dict()
        return out

    def line(self) -> str:
        """The human-readable line (the CLI writes it to standard error)."""
        at = _stretch(self.start_s, self.end_s)
        who = f"person {self.person}" if self.person is not None else "nobody"
        lat = f" [latency {self.latency_s:.1f} s]" if self.latency_s is not None else ""
        if self.kind == "judged":
            if self.label == "untrained":
                return f"{at} {who}: on screen, no verdict (untrained checkpoint){lat}"
            p = f" (p_fake {self.p_fake:.2f})" if self.p_fake is not None else ""
            why = f": {self.message}" if self.message and self.label not in ("real", "fake") else ""
            return f"{at} {who}: {self.label}{p}{why}{lat}"
        if self.kind == "not_enough_yet":
            return f"{at} {who}: not enough yet ({self.message}){lat}"
        if self.kind == "not_judged":
            return f"{at} {who}: not judged ({self.message}){lat}"
        if self.kind == "no_face":
            return f"{at} no face{': ' + self.message if self.message else ''}{lat}"
        if self.kind == "skipped":
            return self.message
        if self.kind == "error":
            return f"{at} error: {self.message}"
        return self.summary.line() if self.summary is not None else self.message


def _round(v: float | None, nd: int = 3) -> float | None:
    return None if v is None else round(float(v), nd)


# --- one window in memory, behind the reader interface of the front end --------------------------
class WindowReader:
    """The frames of one window of a stream, held in memory, behind the part of
    :class:`~stylefusion.video.VideoReader` that :func:`stylefusion.people.analyse_people` uses.

    One :class:`~stylefusion.video.Window` covers all the frames (source indices 0..n-1, their stream
    times as timestamps). Frames of another size than the first (the stream changed resolution
    mid-window) are brought to the first one's, as :class:`VideoReader` does; boxes are reported in
    the source pixels of the first frame.
    """

    def __init__(self, images: list[np.ndarray], times: list[float], *, index: int, start_s: float,
                 end_s: float, source_size: tuple[int, int], max_frame_side: int, name: str = "live"):
        if not images:
            raise ValueError("a window needs at least one frame")
        self.path = name
        self.max_frame_side = int(max_frame_side)
        self._images = images
        self._times = np.asarray(times, np.float64)
        self._window = Window(int(index), 0, len(images), float(start_s), float(end_s), True)
        h, w = images[0].shape[:2]
        sw, sh = source_size
        fps = (len(images) - 1) / (times[-1] - times[0]) if len(images) > 1 and times[-1] > times[0] else 0.0
        self._info = VideoInfo(name, int(sw), int(sh), len(images), fps, float(end_s - start_s), 0, "live",
                               w / sw if sw else 1.0)

    @property
    def info(self) -> VideoInfo:
        return self._info

    def windows(self, window_s: float | None = None, max_windows: int | None = None) -> list[Window]:
        """The one window of the buffered frames (``window_s`` and ``max_windows`` do not apply)."""
        return [self._window]

    def iter_frames(self, plans, max_side: int | None = None) -> Iterator[tuple[Any, Frames | None]]:
        """``(key, frames)`` for each ``(key, source_indices)``, in the order of their last frame,
        at a long side of at most ``max_side`` (default: the frames as kept)."""
        n = len(self._images)
        todo = []
        for key, indices in plans:
            indices = np.asarray(indices, dtype=np.int64)
            if indices.size == 0 or indices.min() < 0 or indices.max() >= n:
                raise ValueError(f"frame indices of plan {key!r} outside this {n}-frame window")
            todo.append((key, indices))
        todo.sort(key=lambda p: int(p[1].max()))
        return self._iter(todo, max_side)

    def _iter(self, todo: list, max_side: int | None) -> Iterator[tuple[Any, Frames | None]]:
        import cv2

        h0, w0 = self._images[0].shape[:2]
        factor = 1.0
        if max_side and max(h0, w0) > max_side:
            factor = max_side / max(h0, w0)
        th, tw = max(2, int(round(h0 * factor))), max(2, int(round(w0 * factor)))
        for key, indices in todo:
            images = np.empty((len(indices), th, tw, 3), np.uint8)
            for k, i in enumerate(indices.tolist()):
                img = self._images[i]
                if img.shape[:2] != (th, tw):
                    img = cv2.resize(img, (tw, th), interpolation=cv2.INTER_AREA)
                images[k] = img
            scale = None if factor == 1.0 else self._info.decoded_scale * tw / w0
            yield key, Frames(images, indices.copy(), self._times[indices], self._info, scale)

    def close(self) -> None:
        return None

    def __enter__(self) -> WindowReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --- people across windows -----------------------------------------------------------------------
@dataclass
class _Seen:
    """One person of one window, as the registry compares them."""

    local: int
    descriptor_sum: np.ndarray
    first_t: float
    first_box: np.ndarray
    last_t: float
    last_box: np.ndarray
    spans: list[tuple[float, float]]

    def overlaps(self, other: _Seen) -> bool:
        return any(a0 <= b1 and b0 <= a1 for a0, a1 in self.spans for b0, b1 in other.spans)


@dataclass
class _Known:
    id: int
    descriptor_sum: np.ndarray
    last_t: float
    last_box: np.ndarray
    last_window: int

    @property
    def descriptor(self) -> np.ndarray:
        n = float(np.linalg.norm(self.descriptor_sum))
        return (self.descriptor_sum / n) if n > 0 else self.descriptor_sum


class PeopleRegistry:
    """Stream-wide person ids for the people of each window, in the front end's own terms.

    A window's person is the known person who continues them (seen within :data:`CONTINUITY_S` of
    where they start, their face passing the tracker's geometric gates, no shot cut between the
    windows), else the known person whose mean identity descriptor is at least
    ``config.reid_min_similarity`` alike, most alike first; two people on screen together never get
    one id. Anyone else is a new person. Ids count from 0 in order of first appearance.
    """

    def __init__(self, config: Any):
        self.config = config
        self.known: dict[int, _Known] = {}
        self.next_id = 0
        self._last_signature: np.ndarray | None = None
        self._last_window: int | None = None

    def assign(self, seen: list[_Seen], window: int, first_signature: np.ndarray | None,
               last_signature: np.ndarray | None) -> dict[int, int]:
        """``{local person id: stream id}`` for the people of one window (updates the registry)."""
        c = self.config
        cut = True
        if self._last_signature is not None and first_signature is not None:
            cut = cut_distance(self._last_signature, first_signature) > c.shot_cut_threshold
        pairs = []
        for p in seen:
            desc = _unit(p.descriptor_sum)
            for g in self.known.values():
                sim = float(desc @ g.descriptor) if desc.size == g.descriptor.size else 0.0
                near = abs(p.first_t - g.last_t) <= CONTINUITY_S
                if not cut and near and self._last_window is not None and g.last_window == self._last_window:
                    cost = _link_cost(c, g.last_box, p.first_box, sim, 1)
                    if cost is not None:
                        pairs.append((0, cost, p.local, g.id, p))
                        continue
                if sim >= c.reid_min_similarity:
                    pairs.append((1, -sim, p.local, g.id, p))
        pairs.sort(key=lambda x: x[:4])
        chosen: dict[int, int] = {}
        holders: dict[int, list[_Seen]] = {}
        for _, _, local, gid, p in pairs:
            if local in chosen or any(q.overlaps(p) for q in holders.get(gid, [])):
                continue
            chosen[local] = gid
            holders.setdefault(gid, []).append(p)
        for p in sorted(seen, key=lambda p: p.local):
            gid = chosen.get(p.local)
            if gid is None:
                gid = chosen[p.local] = self.next_id
                self.next_id += 1
                self.known[gid] = _Known(gid, np.zeros_like(p.descriptor_sum, dtype=np.float64), p.last_t,
                                         p.last_box, window)
            k = self.known[gid]
            if k.descriptor_sum.shape == p.descriptor_sum.shape:
                k.descriptor_sum = k.descriptor_sum + p.descriptor_sum
            else:
                k.descriptor_sum = p.descriptor_sum.astype(np.float64)
            if p.last_t >= k.last_t or k.last_window != window:
                k.last_t, k.last_box = p.last_t, p.last_box
            k.last_window = window
        if len(self.known) > MAX_KNOWN_PEOPLE:
            for gid in sorted(self.known, key=lambda i: self.known[i].last_t)[:len(self.known) - MAX_KNOWN_PEOPLE]:
                del self.known[gid]
        self._last_signature = last_signature
        self._last_window = window
        return chosen


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return (v / n).astype(np.float32) if n > 0 else v.astype(np.float32)


def _people_of(analysis: Any) -> dict[int, _Seen]:
    """Each person of one window's analysis, from their spans' tracks."""
    out: dict[int, _Seen] = {}
    for s in sorted(analysis.spans, key=lambda s: s.start_s):
        tr = s.track
        if tr.descriptor_sum is None:
            continue
        first_box, last_box = tr.boxes[s.ks[0]], tr.boxes[s.ks[-1]]
        p = out.get(s.person)
        if p is None:
            out[s.person] = _Seen(s.person, tr.descriptor_sum.astype(np.float64), s.start_s, first_box, s.end_s,
                                  last_box, [(s.start_s, s.end_s)])
        else:
            p.descriptor_sum = p.descriptor_sum + tr.descriptor_sum
            p.spans.append((s.start_s, s.end_s))
            if s.end_s >= p.last_t:
                p.last_t, p.last_box = s.end_s, last_box
    return out


# --- the session ---------------------------------------------------------------------------------
@dataclass
class _Frame:
    t: float
    image: np.ndarray
    arrival: float  # time.monotonic() when pushed
    source_size: tuple[int, int]  # (width, height) before downscaling


@dataclass
class _Pending:
    index: int
    start_s: float
    end_s: float
    frames: list[_Frame]
    arrival: float  # when its last frame arrived


class LiveSession:
    """Push frames, poll records. Windows complete as frames arrive; a worker thread judges them; at
    most ``max_queue`` completed windows wait (older ones are skipped and reported).

    Args:
        detector: a :class:`~stylefusion.detector.StyleFusionDetector`.
        window_s: seconds per window (default: the checkpoint's ``window_s``, at most
            :data:`MAX_DEFAULT_WINDOW_S`).
        hop_s: seconds from one window's start to the next (default ``window_s``; smaller: windows
            overlap).
        max_lag_s: a window whose turn comes more than this many seconds (of stream time) behind
            the newest frame is skipped.
        max_queue: completed windows waiting at most.
        keep_crops: give each person record one face crop (for display).
        realtime: True (default): never block, skip when behind. False: :meth:`push` waits for room
            in the queue and nothing is skipped (a file judged window by window).
        max_people: people judged at most per window (default: the checkpoint's).
        name: what the source is called in messages.

    ``push`` is cheap: a frame off the time grid of kept frames is dropped at once; a kept one is
    downscaled to ``config.max_frame_side`` and copied. Call :meth:`close` at the end (it joins the
    worker).
    """

    def __init__(self, detector: Any, *, window_s: float | None = None, hop_s: float | None = None,
                 max_lag_s: float = 10.0, max_queue: int = 1, keep_crops: bool = True, realtime: bool = True,
                 max_people: int | None = None, name: str = "live"):
        c = detector.config
        window_s = min(float(c.window_s), MAX_DEFAULT_WINDOW_S) if window_s is None else window_s
        hop_s = window_s if hop_s is None else hop_s
        for label, v in (("window_s", window_s), ("hop_s", hop_s)):
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise ValueError(f"{label}={v!r} must be a positive number of seconds")
        if not (isinstance(max_lag_s, (int, float)) and max_lag_s >= 0):
            raise ValueError(f"max_lag_s={max_lag_s!r} must be >= 0")
        if int(max_queue) < 1:
            raise ValueError(f"max_queue={max_queue!r} must be >= 1")
        self.detector = detector
        self.config = c
        self.window_s, self.hop_s = float(window_s), float(hop_s)
        self.max_lag_s = float(max_lag_s)
        self.max_queue = int(max_queue)
        self.keep_crops = keep_crops
        self.realtime = realtime
        self.max_people = int(max_people or c.max_people)
        self.name = name
        self._interval = self.window_s / (FRAMES_PER_T * c.num_frames)  # the grid of kept frames
        self._cond = threading.Condition()
        self._buffer: deque[_Frame] = deque()
        self._pending: deque[_Pending] = deque()
        self._records: deque[LiveRecord] = deque()
        self._records_cond = threading.Condition()
        self._anchor: float | None = None  # stream time of window 0's start
        self._next = 0  # the next window to complete
        self._newest: float | None = None
        self._period = 0.0  # the shortest time between two pushes: a frame's duration
        self._last_kept: float | None = None
        self._last_completed_end: float | None = None
        self._closing = self._closed = False
        self._summary: LiveSummary | None = None
        self._ended = ""
        self._registry = PeopleRegistry(c)
        self._people: set[int] = set()
        self._judged = self._skipped = self._failed = 0
        self._latencies: deque[float] = deque(maxlen=MAX_LATENCIES)
        self._processing = 0.0
        self._peak = {"buffered_frames": 0, "queued_windows": 0}
        self._dropped_records = 0
        self._worker = threading.Thread(target=self._work, name="stylefusion-live", daemon=True)
        self._worker.start()

    # -- input ---------------------------------------------------------------------------------
    def wants(self, t: float) -> bool:
        """Whether a frame at stream time ``t`` would be kept (a caller may skip converting it): the
        first frame of each cell of an even grid of ``FRAMES_PER_T * T`` cells per window."""
        if self._anchor is None or self._last_kept is None:
            return True
        cell = math.floor((t - self._anchor) / self._interval)
        return cell > math.floor((self._last_kept - self._anchor) / self._interval)

    def push(self, frame: np.ndarray | None, t: float) -> None:
        """One frame (RGB uint8 H x W x 3) at stream time ``t`` seconds. Non-blocking (with
        ``realtime=False``: waits while the queue is full). ``frame=None`` only moves the stream's
        time on (a frame that was decoded but not kept: :meth:`wants`). Frames whose time goes
        backwards are dropped."""
        if not isinstance(t, (int, float)) or not math.isfinite(t):
            raise ValueError(f"t={t!r} must be a finite number of seconds")
        t = float(t)
        img, size = (None, None) if frame is None else self._prepare(frame, t)
        self._add(img, t, size)

    def _prepare(self, frame: np.ndarray, t: float) -> tuple[np.ndarray | None, tuple[int, int] | None]:
        """The frame as kept (RGB uint8, at most ``max_frame_side``, its own copy) and its source size;
        (None, None) when it is off the grid of kept frames."""
        if not self.wants(t):
            return None, None
        frame = np.asarray(frame)
        if frame.ndim == 2:
            frame = np.repeat(frame[..., None], 3, axis=2)
        if frame.ndim != 3 or frame.shape[2] not in (3, 4) or frame.dtype != np.uint8 or min(frame.shape[:2]) < 2:
            raise ValueError(f"a frame must be an RGB uint8 array of shape (H, W, 3), not {frame.dtype} "
                             f"{tuple(frame.shape)}")
        frame = frame[..., :3]
        h, w = frame.shape[:2]
        side = int(self.config.max_frame_side)
        if side and max(h, w) > side:
            import cv2

            s = side / max(h, w)
            img = cv2.resize(np.ascontiguousarray(frame), (max(2, round(w * s)), max(2, round(h * s))),
                             interpolation=cv2.INTER_AREA)
        else:
            img = np.array(frame, copy=True, order="C")
        return img, (w, h)

    def _add(self, img: np.ndarray | None, t: float, source_size: tuple[int, int] | None) -> None:
        """Move the stream's time to ``t`` (completing windows) and keep ``img`` if it is on the grid.
        The decode thread calls it with frames it converted itself (their own copies)."""
        with self._cond:
            if self._closing:
                return
            if self._newest is not None and t < self._newest:
                logger.debug("%s: frame at %.3f s after one at %.3f s: dropped", self.name, t, self._newest)
                return
            if self._anchor is None:
                self._anchor = t
            if self._newest is not None and t > self._newest:
                self._period = min(self._period, t - self._newest) if self._period else t - self._newest
            self._newest = t
            self._complete_until(t)
            if img is not None and self.wants(t):
                self._buffer.append(_Frame(t, img, time.monotonic(), source_size))
                self._last_kept = t
                self._peak["buffered_frames"] = max(self._peak["buffered_frames"], len(self._buffer))

    def _bounds(self, k: int) -> tuple[float, float]:
        start = self._anchor + k * self.hop_s
        return start, start + self.window_s

    def _complete_until(self, t: float) -> None:
        """Complete every window that ends at or before ``t`` (under the lock)."""
        while True:
            start, end = self._bounds(self._next)
            if t < end:
                break
            frames = [f for f in self._buffer if start <= f.t < end]
            if frames:
                self._enqueue(_Pending(self._next, start, end, frames, frames[-1].arrival))
                self._last_completed_end = end
            self._next += 1
            nstart, _ = self._bounds(self._next)
            while self._buffer and self._buffer[0].t < nstart:
                self._buffer.popleft()
            if not self._buffer:  # a gap in the stream: jump to the window that holds t
                jump = math.floor((t - self._anchor - self.window_s) / self.hop_s) + 1
                self._next = max(self._next, jump)

    def _enqueue(self, win: _Pending, closing: bool = False) -> None:
        if not self.realtime:
            while len(self._pending) >= self.max_queue and not self._closing:
                self._cond.wait(0.5)
        elif len(self._pending) >= self.max_queue and not closing:
            old = self._pending.popleft()
            self._skip(old, self._newest - old.end_s)
        self._pending.append(win)
        self._peak["queued_windows"] = max(self._peak["queued_windows"], len(self._pending))
        self._cond.notify_all()

    # -- output --------------------------------------------------------------------------------
    def poll(self, timeout: float = 0.0) -> list[LiveRecord]:
        """Records produced since the last poll (waits up to ``timeout`` seconds for the first)."""
        with self._records_cond:
            if not self._records and timeout > 0:
                self._records_cond.wait(timeout)
            out = list(self._records)
            self._records.clear()
        return out

    def _emit(self, records: list[LiveRecord]) -> None:
        with self._records_cond:
            for r in records:
                if len(self._records) >= MAX_RECORDS:
                    self._records.popleft()
                    self._dropped_records += 1
                    if self._dropped_records == 1:
                        logger.warning("%s: records are not being polled; the oldest are dropped", self.name)
                self._records.append(r)
            self._records_cond.notify_all()

    def _skip(self, win: _Pending, lag: float, why: str | None = None) -> None:
        self._skipped += 1
        reason = why or f"{lag:.1f} s behind"
        self._emit([LiveRecord("skipped", win.index, win.start_s, win.end_s,
                               message=f"window {_stretch(win.start_s, win.end_s)} not analysed: {reason}")])

    @property
    def summary(self) -> LiveSummary:
        """The summary so far (the final one after :meth:`close`)."""
        if self._summary is not None:
            return self._summary
        lat = sorted(self._latencies)
        stream = (self._newest - self._anchor + self._period) if self._newest is not None else 0.0
        ended = self._ended or f"stopped after {clock(stream)}"
        return LiveSummary(len(self._people), self._judged, self._skipped, _percentile(lat, 50),
                           _percentile(lat, 95), ended, stream, self._processing, self._failed)

    def stats(self) -> dict[str, int]:
        """What the session holds now and at most so far: frames buffered, windows queued."""
        with self._cond:
            return {"buffered_frames": len(self._buffer), "queued_windows": len(self._pending),
                    "peak_buffered_frames": self._peak["buffered_frames"],
                    "peak_queued_windows": self._peak["queued_windows"]}

    def close(self, ended: str = "", *, flush: bool = True) -> LiveSummary:
        """Finish: the last partial window is judged (``flush``; otherwise the waiting windows are
        skipped), the worker is joined, and the summary returned. ``ended``: how the stream ended,
        in words ("stream ended after 0:42"). Closing twice returns the same summary."""
        with self._cond:
            if self._closed or self._closing:
                pass
            else:
                self._ended = ended
                if flush:
                    self._flush_partial()
                else:
                    while self._pending:
                        self._skip(self._pending.popleft(), 0.0, "stopped before its turn")
                self._closing = True
                self._buffer.clear()
                self._cond.notify_all()
        self._worker.join()
        with self._cond:
            if self._summary is None:
                self._summary = self.summary
            self._closed = True
        return self._summary

    def _flush_partial(self) -> None:
        """Queue the window under way when it holds frames no completed window had (under the lock).

        Not when it is shorter than twice ``min_person_s``: the front end asks a person of a stretch
        that short for only half of it (its rule for a short *video*), and the tail of a stream is not
        a short video: a face seen for 0.4 s at the end would get a verdict."""
        if self._newest is None:
            return
        start, _ = self._bounds(self._next)
        frames = [f for f in self._buffer if f.t >= start]
        if self._last_completed_end is not None:
            if not any(f.t >= self._last_completed_end for f in frames):
                return
        if len(frames) < 2:
            return
        period = (frames[-1].t - frames[0].t) / (len(frames) - 1)
        end = min(frames[-1].t + max(period, 1e-3), start + self.window_s)
        if end - start < min(2 * self.config.min_person_s, self.window_s):
            logger.info("%s: the last %.1f s are too short to judge anyone; not analysed", self.name, end - start)
            return
        self._enqueue(_Pending(self._next, start, end, frames, frames[-1].arrival), closing=True)
        self._next += 1

    # -- the worker ----------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closing:
                    self._cond.wait()
                if not self._pending:
                    return
                win = self._pending.popleft()
                self._cond.notify_all()
                lag = (self._newest or win.end_s) - win.end_s
            if self.realtime and lag > self.max_lag_s:
                self._skip(win, lag)
                continue
            t0 = time.perf_counter()
            try:
                records = self._judge(win)
            except Exception as exc:  # noqa: BLE001 - one bad window must not end the stream
                logger.debug("%s: window %d failed", self.name, win.index, exc_info=True)
                self._failed += 1
                records = [LiveRecord("error", win.index, win.start_s, win.end_s,
                                      message=f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")]
            spent = time.perf_counter() - t0
            latency = time.monotonic() - win.arrival
            if not any(r.kind == "error" for r in records):
                self._judged += 1
                self._processing += spent
                self._latencies.append(latency)
            for r in records:
                r.latency_s, r.processing_s = latency, spent
            del win
            self._emit(records)

    def _judge(self, win: _Pending) -> list[LiveRecord]:
        """One window through the front end, the networks and the decision; one record per person."""
        from stylefusion.people import analyse_people

        det, c = self.detector, self.config
        reader = WindowReader([f.image for f in win.frames], [f.t for f in win.frames], index=win.index,
                              start_s=win.start_s, end_s=win.end_s, source_size=win.frames[0].source_size,
                              max_frame_side=c.max_frame_side, name=self.name)
        first_sig = frame_signature(win.frames[0].image)
        last_sig = frame_signature(win.frames[-1].image)
        timings: dict[str, float] = {}
        a = analyse_people(reader.path, c, det.cropper, 1, self.max_people, timings, prefetch=False, reader=reader)
        forward = det.forward(a, timings)
        result = det.postprocess(reader.path, a, forward, timings)
        seen = _people_of(a)
        ids = self._registry.assign(list(seen.values()), win.index, first_sig, last_sig)
        crops = {id(seg): track for seg, track in zip(a.judged, a.crops)}
        records = []
        for local in sorted({s.person for s in a.segments}):
            segs = [s for s in a.segments if s.person == local]
            gid = ids.get(local)
            if gid is not None:
                self._people.add(gid)
            judged = [s for s in segs if s.judged]
            seen_s = float(sum(s.end_s - s.start_s for s in segs))
            if judged:
                seg = most_suspicious(judged) or judged[0]
                track = crops.get(id(seg))
                crop = track.crops[len(track.crops) // 2].copy() if (track is not None and self.keep_crops) else None
                records.append(LiveRecord(
                    "judged", win.index, win.start_s, win.end_s, person=gid, label=Label(seg.label).value,
                    p_fake=None if seg.p_fake is None else float(seg.p_fake),
                    decision=None if seg.decision is None else seg.decision.to_dict(), message=seg.message,
                    crop=crop, seen_s=seen_s))
                continue
            seg = max(segs, key=lambda s: (s.end_s - s.start_s, -s.start_s))
            kind = "not_judged" if seg.not_judged == "max_people" else "not_enough_yet"
            records.append(LiveRecord(kind, win.index, win.start_s, win.end_s, person=gid, message=seg.message,
                                      crop=self._span_crop(a, reader, local) if self.keep_crops else None,
                                      seen_s=seen_s))
        if not records:
            records.append(LiveRecord("no_face", win.index, win.start_s, win.end_s, label=Label(result.label).value,
                                      message=result.message))
        return records

    def _span_crop(self, analysis: Any, reader: WindowReader, person: int) -> np.ndarray | None:
        """A face crop of a person who was not judged: their longest span's first scan frame."""
        spans = [s for s in analysis.spans if s.person == person]
        if not spans:
            return None
        s = max(spans, key=lambda s: s.seconds)
        _, got = next(reader.iter_frames([(0, [s.first_index])]))
        img = got.images[0]
        cropper = self.detector.cropper
        box = cropper.crop_box(np.asarray(s.track.boxes[s.ks[0]], np.float32) * got.scale, *img.shape[:2])
        return cropper.crop(img, box)


def _percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


# --- sources -------------------------------------------------------------------------------------
#: Input formats of capture devices (``--format``): a source given with one of them is a device name.
DEVICE_FORMATS = ("v4l2", "video4linux2", "avfoundation", "dshow", "gdigrab", "x11grab", "kmsgrab")


def source_kind(source: str, fmt: str | None = None) -> str:
    """``stdin``, ``device``, ``url`` or ``file``."""
    if source == "-":
        return "stdin"
    if (fmt and fmt in DEVICE_FORMATS) or source.startswith("/dev/video"):
        return "device"
    if "://" in source and not source.startswith("file://"):
        return "url"
    return "file"


def open_source(source: str, connect_timeout: float = 10.0, *, fmt: str | None = None, follow: bool = False,
                options: dict[str, str] | None = None) -> Any:
    """Open ``source`` with PyAV and return the container (its first video stream is watched).

    Args:
        source: a URL FFmpeg opens (``rtsp://``, ``rtmp://``, ``http(s)://`` including HLS
            ``.m3u8``, ``tcp://``, ``udp://``, ...), a capture device (``/dev/video0``, or with
            ``fmt="avfoundation"`` a name such as ``"0"``), ``-`` (standard input) or a file.
        connect_timeout: seconds to wait for the source to answer, when opening and whenever it
            stalls later.
        fmt: force an input format (``v4l2``, ``avfoundation``, ``mpegts``, ...).
        follow: a file still being written: read on as it grows (FFmpeg's ``follow``), until nothing
            new comes for ``connect_timeout`` seconds. MP4 cannot be followed (its index is written
            last); MPEG-TS, Matroska or fragmented MP4 can.
        options: more FFmpeg options.

    Raises:
        StreamError: the source does not answer within ``connect_timeout``, cannot be opened, or has
            no video track. One line naming the source and the reason.
    """
    import av

    if not (isinstance(connect_timeout, (int, float)) and connect_timeout > 0):
        raise ValueError(f"connect_timeout={connect_timeout!r} must be a positive number of seconds")
    kind = source_kind(source, fmt)
    opts = dict(options or {})
    target: Any = source
    if kind == "stdin":
        target = sys.stdin.buffer
    elif kind == "device":
        fmt = fmt or ("v4l2" if sys.platform.startswith("linux") else "avfoundation")
    elif kind == "url":
        us = str(int(connect_timeout * 1e6))
        opts.setdefault("rw_timeout", us)
        scheme = source.split("://", 1)[0].lower()
        if scheme in ("http", "https", "tcp", "udp", "rtsp", "rtsps", "srt"):  # (rtmp's "timeout" means listen)
            opts.setdefault("timeout", us)
    else:
        path = Path(source[len("file://"):] if source.startswith("file://") else source)
        if not path.exists():
            raise StreamError(source, "no such file, device or URL")
        if follow:
            target = f"file:{path}"
            opts.setdefault("follow", "1")
            opts.setdefault("rw_timeout", str(int(connect_timeout * 1e6)))
        else:
            target = str(path)
    t0 = time.monotonic()
    try:
        container = av.open(target, mode="r", format=fmt, options=opts, timeout=(connect_timeout, connect_timeout))
    except av.ExitError:
        raise StreamError(source, f"no answer within {connect_timeout:g} s") from None
    except (av.FFmpegError, OSError, ValueError) as exc:
        waited = time.monotonic() - t0
        if waited >= connect_timeout * 0.95:
            raise StreamError(source, f"no answer within {connect_timeout:g} s") from None
        raise StreamError(source, f"cannot open ({_short(exc)})") from None
    if not container.streams.video:
        container.close()
        raise StreamError(source, "no video track (an audio-only or data stream?)")
    return container


def _short(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return text.splitlines()[0].strip() if text else type(exc).__name__


class _Clock:
    """Stream time of decoded frames: seconds from the first, never going backwards (a stream that
    restarts its timestamps continues from where it was; frames without timestamps are timed by
    their count and the frame rate)."""

    def __init__(self, rate: float):
        self.period = 1.0 / rate if rate and rate > 0 else 1.0 / 25
        self.first: float | None = None
        self.offset = 0.0
        self.last: float | None = None
        self.count = 0

    def __call__(self, frame: Any) -> float:
        raw = frame.time
        raw = self.count * self.period if raw is None else float(raw)
        self.count += 1
        if self.first is None:
            self.first = raw
        t = raw - self.first + self.offset
        if self.last is not None and t <= self.last:
            if t < self.last - 1.0:  # timestamps restarted: continue one frame period on
                self.offset += self.last + self.period - t
                t = self.last + self.period
            else:
                t = self.last + 1e-3
        self.last = t
        return t


@dataclass
class _DecodeState:
    ended: str = ""
    frames: int = 0
    last_t: float = 0.0
    size: tuple[int, int] | None = None
    done: threading.Event = field(default_factory=threading.Event)


def _decode(container: Any, session: LiveSession, state: _DecodeState, stop: threading.Event, pace: bool,
            source: str) -> None:
    """The decode thread: packets → frames → RGB at ``max_frame_side`` → ``session``. Runs ahead of the
    networks; the session's bounded queue decides what waits and what is skipped."""
    import av

    from stylefusion.video import _to_rgb

    try:
        stream = container.streams.video[0]
        rate = float(stream.average_rate or getattr(stream, "guessed_rate", None) or 0)
        clock_of = _Clock(rate)
        side = int(session.config.max_frame_side)
        wall0: float | None = None
        bad = 0
        reason = ""
        try:
            for packet in container.demux(stream):
                if stop.is_set():
                    break
                try:
                    frames = packet.decode()
                    bad = 0
                except av.FFmpegError as exc:  # a corrupt packet: the decoder picks up at the next good one
                    bad += 1
                    logger.debug("%s: a packet does not decode (%s)", source, _short(exc))
                    if bad >= MAX_BAD_PACKETS:
                        reason = f"{bad} packets in a row do not decode"
                        break
                    continue
                for frame in frames:
                    t = clock_of(frame)
                    if pace:
                        wall0 = time.monotonic() - t if wall0 is None else wall0
                        delay = wall0 + t - time.monotonic()
                        if delay > 0 and stop.wait(delay):
                            break
                    size = (frame.width, frame.height)
                    if state.size is not None and size != state.size:
                        logger.warning("%s: the resolution changed from %dx%d to %dx%d at %s", source,
                                       *state.size, *size, clock(t))
                    state.size = size
                    state.frames += 1
                    state.last_t = t
                    if session.wants(t):
                        img, scale = _to_rgb(frame, side)
                        h, w = img.shape[:2]
                        session._add(img, t, (int(round(w / scale)), int(round(h / scale))))
                    else:
                        session.push(None, t)
        except av.ExitError:
            reason = f"no data for {container.read_timeout:g} s" if container.read_timeout else "interrupted"
        except (av.FFmpegError, OSError) as exc:
            reason = _short(exc)
        if stop.is_set():
            return
        if state.frames == 0:
            state.ended = "stream ended before any frame arrived" + (f" ({reason})" if reason else "")
        else:
            state.last_t += clock_of.period  # the end of the last frame
            state.ended = f"stream ended after {clock(state.last_t)}" + (f" ({reason})" if reason else "")
    except Exception as exc:  # noqa: BLE001 - the generator reports it; never a traceback on a stream
        logger.debug("%s: decoding failed", source, exc_info=True)
        state.ended = f"stream ended after {clock(state.last_t)} ({type(exc).__name__}: {_short(exc)})"
    finally:
        try:
            container.close()
        except Exception:  # noqa: BLE001
            pass
        state.done.set()


def watch(detector: Any, source: str, *, window_s: float | None = None, hop_s: float | None = None,
          max_lag_s: float = 10.0, connect_timeout: float = 10.0, realtime: bool | None = None,
          max_people: int | None = None, fmt: str | None = None, follow: bool = False,
          keep_crops: bool = False, max_queue: int = 1) -> Iterator[LiveRecord]:
    """Watch ``source`` and yield :class:`LiveRecord` s as windows are judged, ending with one of kind
    ``ended`` that carries the :class:`LiveSummary`.

    The source is opened at once (a bad one raises here, before any record); decoding runs in a
    thread that pushes frames into a :class:`LiveSession`. Stopping the iteration with Ctrl-C
    (``KeyboardInterrupt`` while waiting, or thrown in at a ``yield``) ends it with the summary so
    far ("stopped by the user after 1:03").

    Args:
        source, connect_timeout, fmt, follow: as :func:`open_source`.
        window_s, hop_s, max_lag_s, max_people, max_queue: as :class:`LiveSession`.
        realtime: treat the source as live: skip windows when the networks fall behind. A plain
            file is then read at its own pace (as if it were playing). Default: True for URLs,
            devices, standard input and followed files; False for a plain file, whose every window
            is judged in turn (the decoder waits for the networks).
        keep_crops: give each person record a face crop (the CLI does not need them).

    Raises:
        StreamError: the source cannot be opened (see :func:`open_source`).
    """
    kind = source_kind(source, fmt)
    live = kind != "file" or follow
    realtime = live if realtime is None else bool(realtime)
    container = open_source(source, connect_timeout, fmt=fmt, follow=follow)
    try:
        session = LiveSession(detector, window_s=window_s, hop_s=hop_s, max_lag_s=max_lag_s, max_queue=max_queue,
                              keep_crops=keep_crops, realtime=realtime, max_people=max_people, name=source)
    except BaseException:
        container.close()
        raise
    return _records(container, session, source, pace=realtime and not live)


def _records(container: Any, session: LiveSession, source: str, pace: bool) -> Iterator[LiveRecord]:
    state = _DecodeState()
    stop = threading.Event()
    thread = threading.Thread(target=_decode, args=(container, session, state, stop, pace, source),
                              name="stylefusion-decode", daemon=True)
    thread.start()
    ended, flush = "", True
    try:
        try:
            while True:
                records = session.poll(timeout=0.2)
                for r in records:
                    yield r
                if state.done.is_set() and not records:
                    break
            ended = state.ended
        except KeyboardInterrupt:
            ended, flush = f"stopped by the user after {clock(state.last_t)}", False
        stop.set()
        summary = session.close(ended, flush=flush)
        for r in session.poll():
            yield r
        yield LiveRecord("ended", -1, 0.0, summary.stream_s, message=summary.ended, summary=summary)
    finally:
        stop.set()
        if not session._closed:
            session.close(ended or "stopped", flush=False)
        # A read blocked in FFmpeg ends within its timeout; the thread is a daemon, not waited for.
        thread.join(timeout=1.0)


__all__ = ["LiveRecord", "LiveSummary", "LiveSession", "PeopleRegistry", "StreamError", "WindowReader", "clock",
           "open_source", "source_kind", "watch"]
