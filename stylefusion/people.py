"""Every person in every analysed stretch of a video: windows → frames → tracks → segments.

The stages before the networks, for a whole video: the video is cut into windows of at most
``config.window_s`` seconds (:class:`stylefusion.video.VideoReader`), T frames are sampled in each
analysed window, every face is detected and linked into one track per person
(:meth:`stylefusion.faces.FaceCropper.track_people`), a person continuing into the next window keeps
their id (:func:`stylefusion.faces.link_across_windows`), and each person with enough presence in a
window becomes a judged **segment**: T crops of that one person. The others are listed with the
reason they were not judged. No network runs here: ``stylefusion faces`` uses it as it is, the
detector passes the judged segments' crops through its extractors together.

Where a core is free for it (:func:`decode_ahead`: faces detected on a GPU, or fewer PyTorch threads
than cores), the next window is decoded while the faces of the current one are detected (a worker
thread, :class:`stylefusion.video.Prefetch`), one window ahead at most. Frames are dropped once a window's
crops are cut; of the previous window only the frames that link its people to the next window's
are kept (each person's last frame), so memory is about two windows' frames whatever the video's
length or its number of windows, as before decoding ahead.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from stylefusion.config import StyleFusionConfig
from stylefusion.errors import VideoReadError
from stylefusion.faces import FaceCropper, FaceTrack, PersonTrack, link_across_windows
from stylefusion.results import Label, SegmentResult, VideoFeatures
from stylefusion.video import Frames, Prefetch, VideoReader, Window

#: People judged at most per window by default (the most present ones; the others are listed).
DEFAULT_MAX_PEOPLE = 4

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


@dataclass
class Analysis:
    """What :func:`analyse_people` found: the windows, every segment, the judged ones' crops."""

    windows: list[Window]
    segments: list[SegmentResult] = field(default_factory=list)  # every person in every analysed window
    judged: list[SegmentResult] = field(default_factory=list)  # the judged ones, aligned with ``crops``
    crops: list[FaceTrack] = field(default_factory=list)
    face_found_ratio: float = 0.0  # analysed sampled frames with at least one confident face
    info: dict[str, Any] = field(default_factory=dict)  # VideoInfo.to_dict()

    def features(self, i: int, content: Any, style: Any) -> VideoFeatures:
        """The i-th judged segment's record on the feature boundary, given its features."""
        t, seg = self.crops[i], self.judged[i]
        return VideoFeatures(content=content[i], style=style[i], source_indices=t.source_indices,
                             timestamps=t.timestamps, boxes=t.boxes, probs=t.probs, fallback=t.fallback,
                             window=seg.window, person=seg.person)


def centre_crops(cropper: FaceCropper, frames: Frames) -> FaceTrack:
    """Centre crops of every sampled frame, flagged as fallbacks (no face tracked)."""
    images = frames.images
    h, w = images.shape[1:3]
    box = cropper.crop_box(None, h, w)
    crops = np.stack([cropper.crop(im, box) for im in images])
    n = len(images)
    return FaceTrack(crops, np.tile(box / frames.info.decoded_scale, (n, 1)).astype(np.float32),
                     np.zeros(n, np.float32), np.ones(n, bool), frames.source_indices, frames.timestamps)


def _no_progress(stage: str, fraction: float) -> None:
    return None


def decode_ahead(cropper: FaceCropper) -> bool:
    """Whether :func:`analyse_people` decodes the next window while faces are detected: when the
    face detector runs on a GPU, or when this process may use more CPU cores than PyTorch's threads.

    On a CPU whose every core runs the detector's threads, the decoder only takes cores from them:
    on 2 cores with 2 threads, a 4-window 720p video took 0.91x as long with decoding ahead
    (``benchmarks/bench_prefetch.py``; MTCNN's parallel regions wait for the preempted thread), and
    0.94x with the decoder at the lowest scheduling priority.
    """
    device = getattr(cropper, "device", "cpu")
    if torch.device(device).type != "cpu":
        return True
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    return cores > torch.get_num_threads()


def linking_frames(frames: Frames, tracks: list[PersonTrack]) -> Frames:
    """What :func:`~stylefusion.faces.link_across_windows` reads of a previous window: ``frames``
    with only each track's last image kept (the others black), to hold while the next window is read.

    Linking compares a previous track's last box, its descriptors and the picture at its last frame
    (shot-cut check) with the next window's first ones. The array is allocated zeroed (``np.zeros``:
    large ones are fresh pages the system maps on first write), so the black frames cost no memory.
    """
    images = np.zeros(frames.images.shape, frames.images.dtype)
    for t in {track.last_t for track in tracks}:
        images[t] = frames.images[t]
    return Frames(images, frames.source_indices, frames.timestamps, frames.info)


def analyse_people(path: str | Path, config: StyleFusionConfig, cropper: FaceCropper, max_windows: int,
                   max_people: int, timings: dict[str, float] | None = None,
                   progress: ProgressFn | None = None, prefetch: bool | None = None) -> Analysis:
    """Windows → frames → tracks → person ids → segments for one video.

    Args:
        max_windows: windows analysed at most (spread evenly over a longer video).
        max_people: people judged at most per window, the most present ones.
        timings: ``sampling`` and ``faces`` seconds are added to it (``sampling``: opening and
            scanning the video, then waiting for frames: decoding that overlaps face detection is
            not counted).
        progress: ``progress(stage, fraction)`` with ``sampling`` then ``faces`` up to 0.5.
        prefetch: decode the next window in a worker thread while the faces of the current one are
            detected (:class:`~stylefusion.video.Prefetch`); False reads in this thread. None (the
            default): :func:`decode_ahead`, i.e. only where a core is free for the decoder.

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
        reader = VideoReader(path, max_frame_side=c.max_frame_side)
        windows = reader.windows(c.window_s, max_windows)
    analysis = Analysis(windows=windows)
    n_analysed = max(1, sum(w.analysed for w in windows))
    prev: tuple[Window, list[PersonTrack], list[int], Frames] | None = None
    next_id = 0
    sampled = found = done = 0
    with reader, contextlib.ExitStack() as stack:
        frames_iter = reader.iter_read(windows, c.num_frames)
        if prefetch:  # closed (the worker joined) before the reader is
            frames_iter = stack.enter_context(Prefetch(frames_iter, depth=1, name="stylefusion-decode"))
        else:
            stack.callback(frames_iter.close)
        while True:
            with timed(timings, "sampling"):
                item = next(frames_iter, None)
            if item is None:
                break
            window, frames = item
            with timed(timings, "faces"):
                detections = cropper.detect(frames.images)
                sampled += len(detections)
                found += sum(1 for _, p in detections if (p >= c.min_face_confidence).any())
                tracks = cropper.track_people(frames, detections)
                ids: list[int | None] = [None] * len(tracks)
                if prev is not None and prev[0].index + 1 == window.index:
                    for j, i in link_across_windows(prev[1], prev[3], tracks, frames, c).items():
                        ids[j] = prev[2][i]
                for j in range(len(tracks)):
                    if ids[j] is None:
                        ids[j], next_id = next_id, next_id + 1
                judged = 0
                # A stretch with fewer distinct frames than T (a very short video, padded
                # circularly) asks for half of them, as the report pipeline's 50%-face rule did.
                available = int(len(np.unique(frames.source_indices)))
                needed = min(c.min_person_frames, -(-available // 2))
                for track, pid in zip(tracks, ids):
                    distinct = track.distinct_frames(frames.source_indices)
                    seen = track.frames
                    seg = SegmentResult(
                        window=window.index, person=int(pid), start_s=window.start_s, end_s=window.end_s,
                        judged=False, label=Label.NOT_JUDGED, p_fake=None, distinct_frames=distinct,
                        first_s=float(frames.timestamps[seen[0]]), last_s=float(frames.timestamps[seen[-1]]))
                    if distinct < needed:
                        seg.message = (f"seen in {distinct} distinct frames of this stretch; "
                                       f"{needed} are needed to judge")
                    elif judged >= max_people:
                        seg.message = f"not among the {max_people} most present people of this stretch"
                    else:
                        judged += 1
                        seg.judged = True  # selected: the detector runs the networks on its crops
                        analysis.crops.append(cropper.segment(frames, track))
                        analysis.judged.append(seg)
                    analysis.segments.append(seg)
                if c.min_person_frames == 0 and judged == 0:
                    # No face is required (data without faces): the stretch is judged on centre
                    # crops, flagged as fallback frames, as a person of its own.
                    seg = SegmentResult(
                        window=window.index, person=next_id, start_s=window.start_s, end_s=window.end_s,
                        judged=False, label=Label.NOT_JUDGED, p_fake=None,
                        distinct_frames=available,
                        first_s=float(frames.timestamps.min()), last_s=float(frames.timestamps.max()),
                        message="no face tracked: centre crops (min_person_frames is 0)")
                    seg.judged = True
                    next_id += 1
                    analysis.crops.append(centre_crops(cropper, frames))
                    analysis.judged.append(seg)
                    analysis.segments.append(seg)
            prev = (window, tracks, [int(i) for i in ids], linking_frames(frames, tracks))
            del item, frames, detections  # the next window may be decoding: hold one window, not two
            done += 1
            report("faces", 0.05 + 0.45 * done / n_analysed)
        analysis.info = reader.info.to_dict()
    analysis.face_found_ratio = found / sampled if sampled else 0.0
    return analysis
