"""Typed records that travel between the stages and out to users, and the decision rule.

``VideoFeatures`` sits on the feature boundary (what the cache stores, what the head reads);
``DetectionResult`` is what ``StyleFusionDetector.detect`` returns, built by :func:`build_result`
from the head's outputs with the rule of :func:`decide`. Every per-frame field is aligned with
``source_indices``, the index of the frame in the decoded video, so an explanation can always be
mapped back to the video.

``DetectionResult.to_dict()`` is versioned by :data:`SCHEMA_VERSION`; the JSON Schema of that
document ships in the package (:func:`result_schema`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import Enum
from functools import lru_cache
from importlib import resources
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from stylefusion.explain import style_flow

if TYPE_CHECKING:  # pragma: no cover
    from stylefusion.config import StyleFusionConfig

#: Version of the layout of ``DetectionResult.to_dict()`` (and of the JSON Schema shipped with it).
SCHEMA_VERSION = 2
SCHEMA_RESOURCE = "detection_result.schema.json"


class Label(str, Enum):
    """What StyleFusion says about a video. Only the first three are verdicts."""

    FAKE = "fake"
    REAL = "real"
    UNCERTAIN = "uncertain"
    NO_FACE = "no_face"  # cannot judge: no person is visible long enough in any analysed stretch
    UNTRAINED = "untrained"  # cannot judge: the checkpoint's head was never trained
    NOT_JUDGED = "not_judged"  # a person or segment listed but not judged (too brief, or beyond max_people)

    @property
    def is_verdict(self) -> bool:
        return self in (Label.FAKE, Label.REAL, Label.UNCERTAIN)

    def __str__(self) -> str:
        return self.value


def face_found_ratio(fallback: np.ndarray) -> float:
    """Share of sampled frames where a face was found (0 for no frames)."""
    return float(1.0 - np.asarray(fallback).mean()) if len(fallback) else 0.0


def decide(config: "StyleFusionConfig", p_fake: float | None) -> tuple[Label, str]:
    """The label and a one-line reason for one judged segment's probability.

    The rule, in order: an untrained head (or no probability) → ``untrained``; within
    ``uncertain_margin`` of the threshold → ``uncertain``; at or above the threshold → ``fake``;
    below → ``real``. Whether a segment is judged at all (enough distinct frames of one person)
    is decided before; how segments combine into a person's and a video's answer is
    :func:`aggregate`.
    """
    c = config
    if not c.trained or p_fake is None:
        return Label.UNTRAINED, ("this checkpoint's fusion head is untrained: its output is not a verdict. "
                                 "Load a trained checkpoint to detect deepfakes.")
    if abs(p_fake - c.threshold) < c.uncertain_margin:
        return Label.UNCERTAIN, (f"p_fake {p_fake:.3f} is within {c.uncertain_margin} of the threshold "
                                 f"{c.threshold:.3f}")
    if p_fake >= c.threshold:
        return Label.FAKE, f"p_fake {p_fake:.3f} >= threshold {c.threshold:.3f}"
    return Label.REAL, f"p_fake {p_fake:.3f} < threshold {c.threshold:.3f}"


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
        window: index of the window (stretch of the video) among all of the video's windows;
        person: the person's id in the video (0 = the most present person).
    """

    content: torch.Tensor
    style: torch.Tensor
    source_indices: np.ndarray
    timestamps: np.ndarray
    boxes: np.ndarray
    probs: np.ndarray
    fallback: np.ndarray
    window: int = 0
    person: int = 0

    @property
    def face_found_ratio(self) -> float:
        return face_found_ratio(self.fallback)

    @property
    def distinct_frames(self) -> int:
        """Distinct source frames among the T crops (fewer than T when the crops are padded)."""
        return int(len(np.unique(self.source_indices)))


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
class SegmentResult:
    """One person in one window: judged (T crops through the networks) or only listed."""

    window: int
    person: int
    start_s: float  # the window's stretch of the video
    end_s: float
    judged: bool
    label: Label  # the verdict for a judged segment, NOT_JUDGED otherwise
    p_fake: float | None  # None when not judged or the head is untrained
    distinct_frames: int  # distinct source frames of this person in the window
    first_s: float  # when the person is first / last seen in the window's sampled frames
    last_s: float
    message: str = ""
    frames: list[FrameResult] = field(default_factory=list)  # T records for a judged segment
    logit: float | None = field(default=None, repr=False)
    crops: np.ndarray | None = field(default=None, repr=False)  # [T, S, S, 3] uint8, if asked
    style_latents: np.ndarray | None = field(default=None, repr=False)  # [T, n_levels*style_dim]

    def to_dict(self) -> dict[str, Any]:
        return {
            "window": int(self.window), "person": int(self.person),
            "start_s": round(float(self.start_s), 6), "end_s": round(float(self.end_s), 6),
            "judged": bool(self.judged), "label": Label(self.label).value,
            "p_fake": None if self.p_fake is None else float(self.p_fake),
            "distinct_frames": int(self.distinct_frames),
            "first_s": round(float(self.first_s), 6), "last_s": round(float(self.last_s), 6),
            "message": self.message, "frames": [f.to_dict() for f in self.frames],
        }


@dataclass
class PersonResult:
    """One person across the video: the answer of their most suspicious judged segment."""

    id: int
    label: Label
    p_fake: float | None
    first_s: float
    last_s: float
    segments: list[SegmentResult]

    @property
    def judged(self) -> bool:
        return any(s.judged for s in self.segments)

    def to_dict(self) -> dict[str, Any]:
        return {"id": int(self.id), "label": Label(self.label).value,
                "p_fake": None if self.p_fake is None else float(self.p_fake),
                "first_s": round(float(self.first_s), 6), "last_s": round(float(self.last_s), 6),
                "segments": [s.to_dict() for s in self.segments]}


@dataclass
class TimelineEntry:
    """One window of the video: whether it was analysed, who was in it, and its answer."""

    window: int
    start_s: float
    end_s: float
    analysed: bool
    label: Label | None  # None when not analysed; NO_FACE when nobody was judged in it
    p_fake: float | None
    people: list[int]

    def to_dict(self) -> dict[str, Any]:
        return {"window": int(self.window), "start_s": round(float(self.start_s), 6),
                "end_s": round(float(self.end_s), 6), "analysed": bool(self.analysed),
                "label": None if self.label is None else Label(self.label).value,
                "p_fake": None if self.p_fake is None else float(self.p_fake),
                "people": [int(p) for p in self.people]}


#: How suspicious a label is, for "the most suspicious segment" when no probability orders them.
_SUSPICION = {Label.FAKE: 3, Label.UNCERTAIN: 2, Label.REAL: 1, Label.UNTRAINED: 0}


def most_suspicious(items: list[Any]) -> Any | None:
    """The judged item (segment or person) with the highest p_fake, or by label when there is none.

    ``items`` have ``label`` and ``p_fake``; items that are not judged are ignored.
    """
    judged = [x for x in items if Label(x.label) in _SUSPICION]
    if not judged:
        return None
    return max(judged, key=lambda x: (_SUSPICION[Label(x.label)], -1.0 if x.p_fake is None else x.p_fake))


@dataclass
class DetectionResult:
    """The answer for one video: per person, per window, and for the whole video.

    The rule (:func:`aggregate`): a judged segment gets ``p_fake`` and a label from :func:`decide`;
    a person gets the label of their most suspicious judged segment; the video gets the label of
    its most suspicious judged person, so a fake anywhere makes the video fake. ``label`` is one of
    ``fake``, ``real``, ``uncertain``, ``no_face`` (nobody visible long enough to judge) or
    ``untrained`` (no verdicts from this checkpoint; ``p_fake`` is then None everywhere: the number
    would look like a verdict but mean nothing).
    """

    path: str
    label: Label
    p_fake: float | None
    threshold: float
    uncertain_margin: float
    face_found_ratio: float
    frames: list[FrameResult]  # the most present person's first judged segment (compatibility)
    timings: dict[str, float]
    checkpoint: dict[str, Any]
    message: str = ""
    video: dict[str, Any] = field(default_factory=dict)
    people: list[PersonResult] = field(default_factory=list)
    timeline: list[TimelineEntry] = field(default_factory=list)
    crops: np.ndarray | None = field(default=None, repr=False)  # crops of ``frames``, if asked
    style_latents: np.ndarray | None = field(default=None, repr=False)  # latents of ``frames``

    @property
    def is_verdict(self) -> bool:
        """True when the label says something about the video (fake, real or uncertain)."""
        return Label(self.label).is_verdict

    @property
    def segments(self) -> list[SegmentResult]:
        """Every segment of every person, in (window, person) order."""
        return sorted((s for p in self.people for s in p.segments), key=lambda s: (s.window, s.person))

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable report (crops and latents left out); see :func:`result_schema`."""
        return {
            "schema_version": SCHEMA_VERSION,
            "path": self.path,
            "label": Label(self.label).value,
            "p_fake": None if self.p_fake is None else float(self.p_fake),
            "threshold": float(self.threshold),
            "uncertain_margin": float(self.uncertain_margin),
            "face_found_ratio": float(self.face_found_ratio),
            "message": self.message,
            "video": dict(self.video),  # copies: a caller editing the report must not edit the result
            "checkpoint": dict(self.checkpoint),
            "timings": {k: round(float(v), 4) for k, v in self.timings.items()},
            "people": [p.to_dict() for p in self.people],
            "timeline": [t.to_dict() for t in self.timeline],
            "frames": [f.to_dict() for f in self.frames],
        }


def frame_results(feats: VideoFeatures, attention: np.ndarray) -> tuple[list[FrameResult], np.ndarray]:
    """Per-frame records of one segment's features and the head's attention, with the flat latents."""
    flat = feats.style.flatten(1).float().numpy()
    flow = style_flow(flat)
    frames = [
        FrameResult(int(feats.source_indices[i]), float(feats.timestamps[i]), feats.boxes[i].tolist(),
                    float(feats.probs[i]), bool(feats.fallback[i]), float(flow[i]), float(attention[i]))
        for i in range(len(feats.source_indices))
    ]
    return frames, flat


def sigmoid(logit: float) -> float:
    """The head's probability for a logit, in float32 as the head computes it."""
    return float(torch.sigmoid(torch.tensor(float(logit), dtype=torch.float32)))


def judge_segment(config: "StyleFusionConfig", segment: SegmentResult, feats: VideoFeatures, logit: float,
                  attention: np.ndarray) -> SegmentResult:
    """Fill a judged segment's verdict and per-frame records from the head's outputs."""
    p = sigmoid(logit)
    segment.judged = True
    segment.label, segment.message = decide(config, p)
    segment.p_fake = p if config.trained else None
    segment.logit = float(logit)
    segment.frames, segment.style_latents = frame_results(feats, attention)
    return segment


def aggregate(segments: list[SegmentResult], timeline: list[TimelineEntry]) -> tuple[
        list[PersonResult], Label, float | None, str]:
    """People from their segments, the timeline's answers, and the video's label, p_fake and message.

    - A person's answer is their most suspicious judged segment's; with none judged, NOT_JUDGED.
    - A window's answer is its most suspicious judged segment's; NO_FACE when nobody was judged.
    - The video's answer is its most suspicious judged person's (a fake anywhere makes the video
      fake; with an untrained head every judged answer is ``untrained``); with nobody judged
      anywhere, ``no_face``.
    """
    by_person: dict[int, list[SegmentResult]] = {}
    for s in segments:
        by_person.setdefault(s.person, []).append(s)
    people = []
    for pid in sorted(by_person):
        segs = sorted(by_person[pid], key=lambda s: s.window)
        top = most_suspicious(segs)
        people.append(PersonResult(
            id=pid, label=Label.NOT_JUDGED if top is None else Label(top.label),
            p_fake=None if top is None else top.p_fake, first_s=min(s.first_s for s in segs),
            last_s=max(s.last_s for s in segs), segments=segs))
    for entry in timeline:
        if not entry.analysed:
            continue
        here = [s for s in segments if s.window == entry.window]
        entry.people = sorted({s.person for s in here})
        top = most_suspicious(here)
        entry.label = Label.NO_FACE if top is None else Label(top.label)
        entry.p_fake = None if top is None else top.p_fake
    top_person = most_suspicious(people)
    if top_person is None:
        seen = [s for s in segments]
        message = ("faces were seen, but no person long enough to judge (fewer than the distinct frames "
                   "the checkpoint needs in every analysed stretch); StyleFusion judges faces, so no verdict"
                   if seen else "no face was found in the analysed stretches; StyleFusion judges faces, "
                   "so no verdict")
        return people, Label.NO_FACE, None, message
    top_segment = most_suspicious(top_person.segments)
    where = f"person {top_person.id}, {clock(top_segment.start_s)}–{clock(top_segment.end_s)}"
    label = Label(top_person.label)
    if label is Label.UNTRAINED:
        message = top_segment.message
    else:
        message = f"{label.value}: {where} ({top_segment.message})"
    return people, label, top_person.p_fake, message


def clock(seconds: float) -> str:
    """0:45, 1:02:03: a time a person reads."""
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


@lru_cache(maxsize=1)
def _schema_text() -> str:
    return resources.files("stylefusion").joinpath("schemas", SCHEMA_RESOURCE).read_text(encoding="utf-8")


def result_schema(document: str = "result") -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) shipped in the package.

    Args:
        document: ``"result"`` for ``DetectionResult.to_dict()``, ``"report"`` for the file
            ``stylefusion detect --json`` writes.
    """
    if document not in ("result", "report"):
        raise ValueError(f"document must be 'result' or 'report', not {document!r}")
    schema = json.loads(_schema_text())
    schema["$ref"] = f"#/$defs/{document}"
    return schema
