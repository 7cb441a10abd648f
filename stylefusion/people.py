"""The front end: which faces of a video are judged, and on which frames. No network runs here.

Read top to bottom, one step each:

1. **windows**: the video cut into equal stretches of at most ``config.window_s`` seconds
   (:meth:`stylefusion.video.VideoReader.windows`, the one formula; at most ``max_windows`` of them
   analysed, spread evenly).
2. **scan** (:func:`scan`): in every analysed window, ``scan_fps`` frames a second (at most
   ``scan_max_frames``): every face, and each frame's colour layout. A window of up to T /
   ``scan_fps`` seconds is scanned on the report's own T frames at full size (their detections
   serve its segments too); a longer one on its own grid, decoded small (long side
   ``scan_max_side``).
3. **shots** (:func:`find_shots`): a cut wherever the colour layout of consecutive scan frames
   changes (:func:`stylefusion.faces.cut_distance`), and wherever analysed windows are not adjacent.
4. **tracks and people**: faces linked through each shot by geometry
   (:func:`stylefusion.faces.track_faces`; a manipulation of the face cannot split a track), then
   one id per person for the whole video (:func:`stylefusion.faces.reidentify`).
5. **spans** (:func:`find_spans`): each person's visible stretch in one shot and one window. A span
   of at least ``min_person_s`` seconds is judged (the ``max_people`` longest of a window); the
   others are listed with the reason.
6. **segments** (:func:`cut_segments`): T frames sampled uniformly across each judged span (only
   those are decoded at full size; circular padding only when the span has fewer than T frames,
   as the report does for short videos), the person's face found in each (its box from the scan
   tells where), cropped. Frames where the face is hidden keep the box interpolated from the scan.

``extract`` (training) and ``detect`` (inference) both call :func:`analyse_people`, so the head is
trained on what it judges; every config field that changes which frames or crops come out is
declared ``features=True`` and so is part of the feature cache's key.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from stylefusion.config import StyleFusionConfig
from stylefusion.errors import VideoReadError
from stylefusion.faces import (Face, FaceCropper, FaceTrack, ScanFrame, Track, _link_cost, box_size, cut_distance,
                               frame_signature, identity_descriptor, reidentify, track_faces)
from stylefusion.results import Label, SegmentResult, VideoFeatures
from stylefusion.video import Frames, Prefetch, VideoReader, Window, sample_indices

logger = logging.getLogger(__name__)

#: Mean luma (0-255) of the scanned frames below / above which "no face" is answered as "too dark" /
#: "too bright to find a face" (MTCNN finds the carphone face down to about 25% brightness, mean 26).
DARK_LUMA = 30.0
BRIGHT_LUMA = 225.0
#: When the scan finds no face in a frame of normal light, a few frames are searched again at full
#: size for faces down to this many pixels, to tell "faces too small to judge" from "no face".
TINY_FACE_PX = 8
TINY_FACE_FRAMES = 4

ProgressFn = Callable[[str, float], None]


class NoJudgedPersonError(VideoReadError):
    """The video was read, but nobody in it is visible long enough to be judged."""


@contextlib.contextmanager
def timed(timings: dict[str, float], name: str) -> Iterator[None]:
    """Add the wall time of the block to ``timings[name]``."""
    t0 = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - t0


def _no_progress(stage: str, fraction: float) -> None:
    return None


# --- records -------------------------------------------------------------------------------------
@dataclass
class Shot:
    """One shot: consecutive scan frames without a cut. ``cut``: it starts at a detected cut (False:
    at the start of the video or of an analysed window that does not follow the previous one)."""

    index: int
    start_s: float
    end_s: float
    cut: bool

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "start_s": round(self.start_s, 6), "end_s": round(self.end_s, 6),
                "cut": self.cut}


@dataclass
class Span:
    """One person visible in one shot and one window: scan frames ``ks`` (positions in the scan)."""

    person: int
    shot: int
    window: int
    track: Track
    ks: list[int]
    start_s: float  # first scan frame the person is seen in
    end_s: float  # the last one plus one scan interval (the time the person is on screen)
    first_index: int  # source frames of the first and last scan frames
    last_index: int

    @property
    def seconds(self) -> float:
        return self.end_s - self.start_s


@dataclass
class Analysis:
    """What :func:`analyse_people` found: windows, shots, spans, every segment, the judged ones' crops."""

    windows: list[Window]
    shots: list[Shot] = field(default_factory=list)
    spans: list[Span] = field(default_factory=list)
    segments: list[SegmentResult] = field(default_factory=list)  # every span (and centre-crop stretch)
    judged: list[SegmentResult] = field(default_factory=list)  # the judged ones, aligned with ``crops``
    crops: list[FaceTrack] = field(default_factory=list)
    face_found_ratio: float = 0.0  # scanned frames with at least one confident face
    info: dict[str, Any] = field(default_factory=dict)  # VideoInfo.to_dict()
    #: Why nobody could be judged, where the front end can measure it (dark frames, faces too small),
    #: e.g. "too_dark: ..."; None otherwise.
    unsupported: str | None = None
    failed: list[str] = field(default_factory=list)  # stretches that could not be read, in words

    def features(self, i: int, content: Any, style: Any) -> VideoFeatures:
        """The i-th judged segment's record on the feature boundary, given its features."""
        t, seg = self.crops[i], self.judged[i]
        return VideoFeatures(content=content[i], style=style[i], source_indices=t.source_indices,
                             timestamps=t.timestamps, boxes=t.boxes, probs=t.probs, fallback=t.fallback,
                             window=seg.window, person=seg.person)


def decode_ahead(cropper: FaceCropper) -> bool:
    """Whether :func:`analyse_people` decodes ahead in a worker thread while faces are detected: when
    the face detector runs on a GPU, or when this process may use more CPU cores than PyTorch's
    threads (on 2 cores running 2 threads the decoder only takes cores from the detector;
    ``benchmarks/bench_prefetch.py``)."""
    device = getattr(cropper, "device", "cpu")
    if torch.device(device).type != "cpu":
        return True
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    return cores > torch.get_num_threads()


def _frames(iterator: Iterator, prefetch: bool, stack: contextlib.ExitStack) -> Iterator:
    if prefetch:  # closed (the worker joined) before the reader is
        return stack.enter_context(Prefetch(iterator, depth=1, name="stylefusion-decode"))
    stack.callback(iterator.close)
    return iterator


# --- 2. scan -------------------------------------------------------------------------------------
def scan_indices(window: Window, config: StyleFusionConfig) -> tuple[np.ndarray, bool]:
    """Source frames the scan looks at in ``window``, and whether they are read at full size.

    ``scan_fps`` frames a second (at least 2 when the window has them, at most ``scan_max_frames``),
    spread uniformly with the first and last included. When that is no more than T (a window of
    up to T / ``scan_fps`` seconds: 10.7 s by default), the scan looks at exactly the T frames
    the report samples in the window, at full size: a person on screen for the whole window (the
    report's case) is then judged on those very frames, and their detections serve the segment
    too, so the scan costs no face detection the report pipeline did not do. Longer windows get
    their own grid, decoded small (long side ``scan_max_side``).
    """
    n_src = window.num_source
    n = math.ceil(max(window.end_s - window.start_s, 0.0) * config.scan_fps)
    n = max(2, min(n, int(config.scan_max_frames)))
    if n <= config.num_frames:
        return np.unique(sample_indices(n_src, config.num_frames) + window.start), True
    return np.unique(sample_indices(n_src, min(n, n_src)) + window.start), False


def scan(reader: VideoReader, windows: list[Window], config: StyleFusionConfig, cropper: FaceCropper,
         prefetch: bool = False, progress: Callable[[float], None] | None = None) -> tuple[list[ScanFrame], list[str]]:
    """Every face and the colour layout of the scan frames of the analysed ``windows``, in time order.

    A window none of whose scan frames decodes is marked ``analysed = False`` and named in the
    returned list of failures; the other windows are scanned as usual. Frames read at full size
    keep their raw detections (:attr:`ScanFrame.detections`) for the segments to reuse.
    """
    todo = [w for w in windows if w.analysed]
    plans = {True: [], False: []}
    for w in todo:
        indices, full = scan_indices(w, config)
        plans[full].append((w, indices))
    frames_out: list[ScanFrame] = []
    failed: list[str] = []
    done = 0
    for full, group in plans.items():
        if not group:
            continue
        side = reader.max_frame_side if full else config.scan_max_side
        with contextlib.ExitStack() as stack:
            it = _frames(reader.iter_frames(group, max_side=side), prefetch, stack)
            for w, frames in it:
                done += 1
                if frames is None:
                    w.analysed = False
                    failed.append(f"{w.start_s:.1f}-{w.end_s:.1f} s: no frame could be decoded")
                    logger.warning("%s: window %d (%s) could not be decoded; the others are analysed",
                                   reader.path, w.index, failed[-1])
                    continue
                detections = cropper.detect(frames.images)
                scale = frames.scale
                seen: set[int] = set()
                for t, (boxes, probs) in enumerate(detections):
                    index = int(frames.source_indices[t])
                    if index in seen:  # circular padding of a window with fewer than T frames
                        continue
                    seen.add(index)
                    image = frames.images[t]
                    faces = [Face(np.asarray(boxes[j], np.float32) / scale, float(probs[j]),
                                  identity_descriptor(image, boxes[j])) for j in range(len(boxes))]
                    luma = float(np.dot(image.reshape(-1, 3)[::7].mean(axis=0), (0.299, 0.587, 0.114)))
                    frames_out.append(ScanFrame(index, float(frames.timestamps[t]), w.index, faces,
                                                frame_signature(image), luma,
                                                detections=(boxes, probs) if full else None))
                if progress is not None:
                    progress(done / max(len(todo), 1))
    frames_out.sort(key=lambda f: f.index)
    return frames_out, failed


# --- 3. shots ------------------------------------------------------------------------------------
def find_shots(frames: list[ScanFrame], windows: list[Window], config: StyleFusionConfig) -> list[Shot]:
    """Number the shots of the scan (sets ``ScanFrame.shot``) and return them with their bounds.

    A shot starts at the first scan frame, at every cut (:func:`~stylefusion.faces.cut_distance`
    above ``shot_cut_threshold``; hue and saturation only, so a fade or an exposure change is not
    one, and a median over a grid, so a face that flickers is not either), and at every analysed
    window that does not follow the previous one. A cut lies between two scan frames; its time is
    taken halfway.
    """
    by_index = {w.index: w for w in windows}
    shots: list[Shot] = []
    for k, f in enumerate(frames):
        prev = frames[k - 1] if k else None
        if prev is None or f.window not in (prev.window, prev.window + 1):
            shots.append(Shot(len(shots), by_index[f.window].start_s, by_index[f.window].end_s, False))
        elif cut_distance(prev.signature, f.signature) > config.shot_cut_threshold:
            at = (prev.time + f.time) / 2
            shots[-1].end_s = at
            shots.append(Shot(len(shots), at, by_index[f.window].end_s, True))
        else:
            shots[-1].end_s = by_index[f.window].end_s
        f.shot = shots[-1].index
    return shots


# --- 5. spans ------------------------------------------------------------------------------------
def find_spans(tracks: list[Track], frames: list[ScanFrame], windows: list[Window]) -> list[Span]:
    """Each track cut at window bounds: one span per person, shot and window, in time order.

    A span lasts from its first scan frame to its last plus one scan interval of its window (the
    person is on screen until about the next scan frame).
    """
    per_window: dict[int, list[int]] = {}
    for k, f in enumerate(frames):
        per_window.setdefault(f.window, []).append(k)
    step = {}
    by_index = {w.index: w for w in windows}
    for w in windows:
        ks = per_window.get(w.index, [])
        step[w.index] = (w.end_s - w.start_s) / len(ks) if ks else 0.0
    spans = []
    for tr in tracks:
        groups: dict[int, list[int]] = {}
        for k in tr.ks:
            groups.setdefault(frames[k].window, []).append(k)
        for w, ks in groups.items():
            first, last = frames[ks[0]], frames[ks[-1]]
            end = min(last.time + step[w], by_index[w].end_s) if w in by_index else last.time + step[w]
            spans.append(Span(tr.person, tr.shot, w, tr, ks, first.time, max(end, first.time),
                              first.index, last.index))
    spans.sort(key=lambda s: (s.window, s.start_s, s.person))
    return spans


def _interpolate_box(track: Track, frames: list[ScanFrame], t: float) -> np.ndarray:
    """The track's box (source pixels) at time ``t``: linear between the scan frames around it."""
    times = np.array([frames[k].time for k in track.ks])
    boxes = np.stack([track.boxes[k] for k in track.ks]).astype(np.float64)
    return np.array([np.interp(t, times, boxes[:, i]) for i in range(4)], np.float32)


# --- 6. segments ---------------------------------------------------------------------------------
def _segment_crops(cropper: FaceCropper, frames: Frames, span: Span, scan_frames: list[ScanFrame]) -> FaceTrack:
    """T crops of one span's person: their face found again in each frame at full size.

    The scan says where the face is at each frame's time (its boxes interpolated); MTCNN runs on
    the frames at full size, and the face passing the tracking gates against that box with the
    lowest cost is the person's. Where
    none does (a hand over the face, a head turned away), the interpolated box is kept, with
    probability 0: the crop is still that person's place in the frame.
    """
    c = cropper.config
    scale = frames.scale
    images = frames.images
    h, w = images.shape[1:3]
    src = np.asarray(frames.source_indices)
    first_t: dict[int, int] = {}
    for t, s in enumerate(src.tolist()):
        first_t.setdefault(int(s), t)
    distinct = sorted(first_t.values())
    expected = {t: _interpolate_box(span.track, scan_frames, float(frames.timestamps[t])) * scale for t in distinct}
    # A full search on each frame (not one narrowed to the expected face size, which saved 30-60% of
    # this step but moved boxes by up to 10% of the face: IoU 0.85-0.91 against the full search):
    # the boxes are the report pipeline's, frame for frame. Frames the scan read at full size were
    # searched then, on the same pixels: their detections are reused.
    known = {f.index: f.detections for f in scan_frames if f.detections is not None}
    todo = [t for t in distinct if int(src[t]) not in known]
    found = {t: known[int(src[t])] for t in distinct if int(src[t]) in known}
    if todo:
        found.update(zip(todo, cropper.detect(images[todo])))
    size = c.face_size
    n = len(images)
    crops = np.empty((n, size, size, 3), np.uint8)
    boxes = np.empty((n, 4), np.float32)
    probs = np.zeros(n, np.float32)
    done: dict[int, int] = {}
    for i in range(n):
        t = first_t[int(src[i])]
        if t in done:  # a repeat of the padding: copy, do not crop again
            j = done[t]
            crops[i], boxes[i], probs[i] = crops[j], boxes[j], probs[j]
            continue
        guess = expected[t]
        best, box, prob = None, guess, 0.0
        for b, p in zip(*found[t]):
            if p < c.min_face_confidence:
                continue
            cost = _link_cost(c, guess, b, 1.0, 2)
            if cost is not None and (best is None or cost < best):
                best, box, prob = cost, np.asarray(b, np.float32), float(p)
        crop_box = cropper.crop_box(box, h, w)
        crops[i] = cropper.crop(images[t], crop_box)
        boxes[i] = crop_box / scale  # report in source pixels
        probs[i] = prob
        done[t] = i
    return FaceTrack(crops, boxes, probs, np.zeros(n, bool), src.copy(), np.asarray(frames.timestamps).copy())


def centre_crops(cropper: FaceCropper, frames: Frames) -> FaceTrack:
    """Centre crops of every sampled frame, flagged as fallbacks (no face tracked)."""
    images = frames.images
    h, w = images.shape[1:3]
    box = cropper.crop_box(None, h, w)
    crops = np.stack([cropper.crop(im, box) for im in images])
    n = len(images)
    return FaceTrack(crops, np.tile(box / frames.scale, (n, 1)).astype(np.float32),
                     np.zeros(n, np.float32), np.ones(n, bool), frames.source_indices, frames.timestamps)


def _why_no_face(frames: list[ScanFrame], reader: VideoReader, config: StyleFusionConfig,
                 cropper: FaceCropper) -> str | None:
    """Why nobody could be judged, where it can be measured; None when there is just no face to see.

    - frames too dark or too bright to find a face (a face may still flash up in a frame or two);
    - faces too small: the faces the scan saw are smaller than the checkpoint's ``min_face_px``,
      or, when it saw none, a one-off search of a few frames at full size for faces down to
      :data:`TINY_FACE_PX` finds some (below what the scan looks for at this resolution).
    """
    if not frames:
        return None
    luma = float(np.mean([f.brightness for f in frames]))
    if luma < DARK_LUMA:
        return f"too_dark: the frames are too dark to find a face (mean brightness {luma:.0f}/255)"
    if luma > BRIGHT_LUMA:
        return f"too_bright: the frames are too bright to find a face (mean brightness {luma:.0f}/255)"
    conf = config.min_face_confidence
    sizes = [box_size(face.box) for f in frames for face in f.faces if face.prob >= conf]
    if not sizes and getattr(cropper, "mtcnn", None) is not None:  # (a stand-in cropper has no MTCNN)
        picks = [frames[int(i)].index for i in np.linspace(0, len(frames) - 1, min(TINY_FACE_FRAMES, len(frames)))]
        fine = FaceCropper(cropper.config.replace(mtcnn_min_face_size=TINY_FACE_PX, detect_max_side=0),
                           device=cropper.device)
        for _, got in reader.iter_frames([("tiny", np.unique(picks))]):
            if got is None:
                continue
            for boxes, probs in fine.detect(got.images):
                sizes += [box_size(b) / got.scale for b, p in zip(boxes, probs) if p >= conf]
    if sizes and float(np.median(sizes)) < config.min_face_px:
        return (f"faces_too_small: faces of about {float(np.median(sizes)):.0f} px were found; faces of at "
                f"least {config.min_face_px:g} px are needed to judge them")
    return None


def _segment(span: Span, judged: bool, message: str, distinct: int, not_judged: str | None = None) -> SegmentResult:
    return SegmentResult(window=span.window, person=span.person, start_s=span.start_s, end_s=span.end_s,
                         judged=judged, label=Label.NOT_JUDGED, p_fake=None, distinct_frames=distinct,
                         first_s=span.start_s, last_s=span.end_s, message=message, shot=span.shot,
                         not_judged=not_judged)


def analyse_people(path: str | Path, config: StyleFusionConfig, cropper: FaceCropper, max_windows: int,
                   max_people: int, timings: dict[str, float] | None = None,
                   progress: ProgressFn | None = None, prefetch: bool | None = None, *,
                   reader: Any = None) -> Analysis:
    """Windows → scan → shots → tracks → people → spans → segments for one video.

    Args:
        max_windows: windows analysed at most (spread evenly over a longer video).
        max_people: spans judged at most per window, the longest ones.
        timings: seconds are added under ``sampling`` (opening the video, decoding the judged
            spans' frames), ``scan`` (decoding and searching the scan frames, shots, tracks,
            people) and ``faces`` (finding each judged person's face in their frames, cropping).
        progress: ``progress(stage, fraction)`` with ``sampling`` then ``faces`` up to 0.5.
        prefetch: decode ahead in a worker thread (:class:`~stylefusion.video.Prefetch`); None:
            :func:`decode_ahead`.
        reader: an open reader to analyse instead of opening ``path``: anything with the part of
            :class:`~stylefusion.video.VideoReader` used here (``windows``, ``iter_frames``, ``info``,
            ``path``, ``max_frame_side``, a context manager), such as a live stream's window held in
            memory (:class:`stylefusion.live.WindowReader`). It is closed at the end, as one opened
            here is.

    Raises:
        VideoReadError: the file cannot be read as a video.
        ValueError: ``max_windows`` or ``max_people`` below 1.
    """
    c = config
    timings = {} if timings is None else timings
    report = progress or _no_progress
    prefetch = decode_ahead(cropper) if prefetch is None else prefetch
    if max_windows < 1 or max_people < 1:
        raise ValueError(f"max_windows={max_windows} and max_people={max_people} must be >= 1")
    report("sampling", 0.0)
    with timed(timings, "sampling"):
        reader = VideoReader(path, max_frame_side=c.max_frame_side) if reader is None else reader
    with reader:
        with timed(timings, "sampling"):
            windows = reader.windows(c.window_s, max_windows)
        a = Analysis(windows=windows)
        with timed(timings, "scan"):
            frames, a.failed = scan(reader, windows, c, cropper, prefetch,
                                    lambda f: report("faces", 0.05 + 0.3 * f))
            if not any(w.analysed for w in windows):
                raise VideoReadError(path, "no frame could be decoded (corrupt data or unsupported codec)")
            a.shots = find_shots(frames, windows, c)
            tracks = track_faces(frames, c)
            reidentify(tracks, frames, c)
            a.spans = find_spans(tracks, frames, windows)
        conf = c.min_face_confidence
        a.face_found_ratio = (sum(1 for f in frames if any(x.prob >= conf for x in f.faces)) / len(frames)
                              if frames else 0.0)

        # Which spans are judged: per window the longest ones, if long enough.
        chosen: list[tuple[Span, SegmentResult]] = []
        for w in windows:
            here = sorted((s for s in a.spans if s.window == w.index), key=lambda s: (-s.seconds, s.person))
            # A stretch shorter than twice min_person_s (a very short video) asks for half of it, as
            # the report pipeline's rule that half of the frames must show a face did.
            needed = min(c.min_person_s, 0.5 * (w.end_s - w.start_s))
            n = 0
            for s in here:
                if s.seconds < needed or (c.min_person_s > 0 and len(s.ks) < 2):
                    seg = _segment(s, False, f"on screen for {s.seconds:.1f} s in this shot; "
                                             f"{needed:g} s are needed to judge", len(s.ks), "too_brief")
                elif n >= max_people:
                    seg = _segment(s, False, f"not among the {max_people} people longest on screen in this stretch",
                                   len(s.ks), "max_people")
                else:
                    n += 1
                    seg = _segment(s, True, "", len(s.ks))
                    chosen.append((s, seg))
                a.segments.append(seg)
        # The judged spans' frames: T across each span, decoded at full size.
        plans = [(i, sample_indices(s.last_index - s.first_index + 1, c.num_frames) + s.first_index)
                 for i, (s, _) in enumerate(chosen)]
        if c.min_person_s == 0:  # no face required: windows where nobody is judged, on centre crops
            judged_windows = {s.window for s, _ in chosen}
            plans += [(w, sample_indices(w.num_source, c.num_frames) + w.start) for w in windows
                      if w.analysed and w.index not in judged_windows]
        next_id = 1 + max((s.person for s in a.spans), default=-1)
        crops_of: dict[int, tuple[SegmentResult, FaceTrack]] = {}
        with contextlib.ExitStack() as stack:
            sampled = _frames(reader.iter_frames(plans), prefetch, stack)
            done = 0
            while True:
                with timed(timings, "sampling"):
                    item = next(sampled, None)
                if item is None:
                    break
                key, got = item
                with timed(timings, "faces"):
                    if isinstance(key, Window):
                        if got is None:
                            continue
                        seg = SegmentResult(
                            window=key.index, person=next_id, start_s=key.start_s, end_s=key.end_s, judged=True,
                            label=Label.NOT_JUDGED, p_fake=None, distinct_frames=len(np.unique(got.source_indices)),
                            first_s=float(got.timestamps.min()), last_s=float(got.timestamps.max()),
                            message="no face tracked: centre crops (min_person_s is 0)")
                        next_id += 1
                        a.segments.append(seg)
                        crops_of[len(chosen) + key.index] = (seg, centre_crops(cropper, got))
                    else:
                        span, seg = chosen[key]
                        if got is None:
                            seg.judged = False
                            seg.message = "its frames could not be decoded"
                            a.failed.append(f"{span.start_s:.1f}-{span.end_s:.1f} s (person {span.person}): "
                                            "no frame could be decoded")
                            continue
                        track = _segment_crops(cropper, got, span, frames)
                        seg.distinct_frames = int(len(np.unique(track.source_indices)))
                        crops_of[key] = (seg, track)
                del item, got
                done += 1
                report("faces", 0.35 + 0.15 * done / max(len(plans), 1))
        for key in sorted(crops_of, key=lambda k: (crops_of[k][0].window, crops_of[k][0].start_s, crops_of[k][0].person)):
            seg, track = crops_of[key]
            a.judged.append(seg)
            a.crops.append(track)
        if not a.judged:
            a.unsupported = _why_no_face(frames, reader, c, cropper)
        a.info = reader.info.to_dict()
    a.segments.sort(key=lambda s: (s.window, s.start_s, s.person))
    return a
