"""Typed records that travel between the stages and out to users, and the decision rule.

``VideoFeatures`` sits on the feature boundary (what the cache stores, what the head reads);
``DetectionResult`` is what ``StyleFusionDetector.detect`` returns: per person, per window and for
the whole video, each judged segment with its :class:`DecisionRecord` (the rule that fills it is
:func:`stylefusion.decision.decide`; how segments combine is :func:`aggregate`). Every per-frame field is aligned with
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
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from stylefusion.explain import style_flow

if TYPE_CHECKING:  # pragma: no cover - annotations only: records and the card need no torch
    import torch

#: Version of the layout of ``DetectionResult.to_dict()`` (and of the JSON Schema shipped with it).
#: 3: a ``decision`` record per judged segment and for the video, the ``unsupported`` label, a
#: per-frame ``contribution``; ``uncertain_margin`` left the top level (it is the decision's band).
#: 4: ``shots`` (the video's shots as the front end found them), a ``shot`` per segment (a segment is
#: one person's visible span in one shot and window, judged or listed), a ``message`` per timeline
#: entry (why a stretch was not analysed).
#: 5: ``provenance`` (Content Credentials) and ``history`` (processing history) of the file, and
#: ``history_reasons`` in every decision record.
SCHEMA_VERSION = 5
SCHEMA_RESOURCE = "detection_result.schema.json"


class Label(str, Enum):
    """What StyleFusion says about a video. Only the first three are verdicts."""

    FAKE = "fake"
    REAL = "real"
    UNCERTAIN = "uncertain"
    NO_FACE = "no_face"  # cannot judge: no person is visible long enough in any analysed stretch
    UNSUPPORTED = "unsupported"  # cannot judge: the face is too small, blurry, dark or bright
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
        person: the person's id in the video (0 = the most present person);
        quality: [3] float32 face size (source px), sharpness and brightness of the crops
            (:class:`stylefusion.decision.Quality`), or None when not measured.
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
    quality: np.ndarray | None = None

    @property
    def face_found_ratio(self) -> float:
        return face_found_ratio(self.fallback)

    @property
    def distinct_frames(self) -> int:
        """Distinct source frames among the T crops (fewer than T when the crops are padded)."""
        return int(len(np.unique(self.source_indices)))


def _round(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else round(float(value), digits)


@dataclass
class DecisionRecord:
    """How one judged segment's answer was reached, with every number it rests on.

    Filled by :func:`stylefusion.decision.decide`; a checkpoint's settings alone (nothing judged) by
    :func:`stylefusion.decision.checkpoint_decision`. ``calibrated`` is False for checkpoints trained
    before calibration existed: their probability is the raw sigmoid (``temperature`` 1), their
    band the fixed ``uncertain_margin`` around the threshold, and they have no validation rates,
    no conformal guarantee and no out-of-domain check.
    """

    calibrated: bool
    threshold: float  # the one applied: for a video judged on ``segments`` segments
    threshold_policy: str  # "fpr:0.05", "youden", a fixed value, or "fixed (uncalibrated checkpoint)"
    segments: int = 1  # judged segments of the video this answer belongs to (the unit answered)
    threshold_source: str | None = None  # how the threshold for that unit was obtained
    temperature: float = 1.0
    val_tpr: float | None = None  # on validation videos, at the threshold
    val_fpr: float | None = None
    alpha: float | None = None  # conformal level: the set holds the true label with prob. >= 1 - alpha
    band: tuple[float, float] | None = None  # p_fake interval answered "uncertain"
    band_source: str | None = None  # how the band was obtained, with its guarantee
    logit: float | None = None  # the head's raw output
    p_fake: float | None = None  # sigmoid(logit / temperature); None for an untrained head
    ood_score: float | None = None  # Mahalanobis distance of the fused embedding
    ood_threshold: float | None = None  # 99th percentile of validation scores
    out_of_domain: bool | None = None  # None: no out-of-domain statistics in the checkpoint
    quality: dict[str, float] | None = None  # face_px, sharpness, brightness of the segment
    quality_limits: dict[str, float] = field(default_factory=dict)
    quality_reasons: list[str] = field(default_factory=list)  # face_too_small, too_blurry, too_dark, too_bright
    # heavily_recompressed, possible_recapture (stylefusion.history): the answer is `uncertain`, p_fake kept
    history_reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "calibrated": bool(self.calibrated), "threshold": float(self.threshold),
            "threshold_policy": self.threshold_policy, "segments": int(self.segments),
            "threshold_source": self.threshold_source, "temperature": float(self.temperature),
            "val_tpr": _round(self.val_tpr), "val_fpr": _round(self.val_fpr),
            "alpha": None if self.alpha is None else float(self.alpha),
            "band": None if self.band is None else [round(float(v), 6) for v in self.band],
            "band_source": self.band_source, "logit": None if self.logit is None else float(self.logit),
            "p_fake": None if self.p_fake is None else float(self.p_fake),
            "ood_score": _round(self.ood_score), "ood_threshold": _round(self.ood_threshold),
            "out_of_domain": self.out_of_domain,
            "quality": None if self.quality is None else dict(self.quality),
            "quality_limits": dict(self.quality_limits), "quality_reasons": list(self.quality_reasons),
            "history_reasons": list(self.history_reasons),
        }


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
    # How much this frame moved its segment's logit: the logit minus the logit with this frame's
    # style latent replaced by its neighbours' mean (stylefusion.evidence); None when untrained.
    contribution: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "source_index": int(self.source_index),
            "timestamp": round(float(self.timestamp), 6),
            "box": [round(float(v), 3) for v in self.box],
            "detection_prob": round(float(self.detection_prob), 6),
            "fallback": bool(self.fallback),
            "style_flow": float(self.style_flow),
            "attention": float(self.attention),
            "contribution": None if self.contribution is None else float(self.contribution),
        }


@dataclass
class SegmentResult:
    """One person in one window: judged (T crops through the networks) or only listed."""

    window: int
    person: int
    start_s: float  # the person's visible span: first scan frame seen, to the last plus one interval
    end_s: float
    judged: bool
    label: Label  # the verdict for a judged segment, NOT_JUDGED otherwise
    p_fake: float | None  # None when not judged or the head is untrained
    distinct_frames: int  # distinct source frames judged (judged), or scan frames seen (listed)
    first_s: float  # when the person is first / last seen in the span
    last_s: float
    message: str = ""
    shot: int | None = None  # the shot of the span (DetectionResult.shots); None for centre crops
    # Why a listed segment was not judged, as a code (the message says it in words): "too_brief"
    # (on screen for less than needed) or "max_people" (beyond the people judged per window).
    not_judged: str | None = field(default=None, repr=False)
    frames: list[FrameResult] = field(default_factory=list)  # T records for a judged segment
    decision: DecisionRecord | None = None  # how a judged segment's answer was reached
    clip_contributions: list[float] | None = None  # per content clip, as FrameResult.contribution
    logit: float | None = field(default=None, repr=False)
    crops: np.ndarray | None = field(default=None, repr=False)  # [T, S, S, 3] uint8, if asked
    style_latents: np.ndarray | None = field(default=None, repr=False)  # [T, n_levels*style_dim]
    features: VideoFeatures | None = field(default=None, repr=False)  # what the head judged (explain() reads it)
    # Heatmaps of the frames that moved the logit most (StyleFusionDetector.explain): arrays, so not
    # in to_dict(), which lists the explained frames and what their maps add up to.
    heatmaps: list[Any] | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "window": int(self.window), "person": int(self.person),
            "start_s": round(float(self.start_s), 6), "end_s": round(float(self.end_s), 6),
            "judged": bool(self.judged), "label": Label(self.label).value,
            "p_fake": None if self.p_fake is None else float(self.p_fake),
            "distinct_frames": int(self.distinct_frames),
            "first_s": round(float(self.first_s), 6), "last_s": round(float(self.last_s), 6),
            "message": self.message, "shot": None if self.shot is None else int(self.shot),
            "decision": None if self.decision is None else self.decision.to_dict(),
            "clip_contributions": (None if self.clip_contributions is None
                                   else [float(v) for v in self.clip_contributions]),
            "evidence": None if self.heatmaps is None else [_heatmap_dict(h) for h in self.heatmaps],
            "frames": [f.to_dict() for f in self.frames],
        }


def _heatmap_dict(h: Any) -> dict[str, Any]:
    """What the JSON says of one frame's heatmaps (``stylefusion.evidence.FrameHeatmap``): which
    frame, how, and what each map adds up to (its logit change; the maps are PNGs or arrays)."""
    return {"position": int(h.position), "source_index": int(h.source_index), "clip": int(h.clip),
            "method": h.method, "style_sum": float(h.style.sum()), "content_sum": float(h.content.sum())}


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
    message: str = ""  # why a stretch was not analysed (left out by max_windows, undecodable)

    def to_dict(self) -> dict[str, Any]:
        return {"window": int(self.window), "start_s": round(float(self.start_s), 6),
                "end_s": round(float(self.end_s), 6), "analysed": bool(self.analysed),
                "label": None if self.label is None else Label(self.label).value,
                "p_fake": None if self.p_fake is None else float(self.p_fake),
                "people": [int(p) for p in self.people], "message": self.message}


#: How suspicious a label is, for "the most suspicious segment" when no probability orders them.
#: ``unsupported`` is not here: like ``no_face`` it is "cannot judge", and a verdict anywhere
#: (even ``real``) says more about a video than a segment that could not be judged.
_SUSPICION = {Label.FAKE: 3, Label.UNCERTAIN: 2, Label.REAL: 1, Label.UNTRAINED: 0}


def most_suspicious(items: list[Any]) -> Any | None:
    """The judged item (segment or person) with the highest p_fake, or by label when there is none.

    ``items`` have ``label`` and ``p_fake``; items without an answer (not judged, unsupported) are
    ignored.
    """
    judged = [x for x in items if Label(x.label) in _SUSPICION]
    if not judged:
        return None
    return max(judged, key=lambda x: (_SUSPICION[Label(x.label)], -1.0 if x.p_fake is None else x.p_fake))


def _first_unsupported(items: list[Any]) -> Any | None:
    return next((x for x in items if Label(x.label) is Label.UNSUPPORTED), None)


@dataclass
class DetectionResult:
    """The answer for one video: per person, per window, and for the whole video.

    The rule (:func:`aggregate`): a judged segment gets ``p_fake``, a label and a
    :class:`DecisionRecord` from :func:`stylefusion.decision.decide`; a person gets the label of
    their most suspicious judged segment; the video gets the label of its most suspicious judged
    person, so a fake anywhere makes the video fake. ``label`` is one of ``fake``, ``real``,
    ``uncertain`` (the verdicts), ``unsupported`` (faces too small, blurry, dark or bright to
    judge), ``no_face`` (nobody visible long enough to judge) or ``untrained`` (no verdicts from
    this checkpoint; ``p_fake`` is then None everywhere: the number would look like a verdict but
    mean nothing). ``decision`` is the deciding segment's record (the checkpoint's settings alone
    when nothing was judged).
    """

    path: str
    label: Label
    p_fake: float | None
    threshold: float
    face_found_ratio: float
    frames: list[FrameResult]  # the most present person's first judged segment (compatibility)
    timings: dict[str, float]
    checkpoint: dict[str, Any]
    decision: DecisionRecord | None = None
    message: str = ""
    video: dict[str, Any] = field(default_factory=dict)
    people: list[PersonResult] = field(default_factory=list)
    timeline: list[TimelineEntry] = field(default_factory=list)
    shots: list[dict[str, Any]] = field(default_factory=list)  # index, start_s, end_s, cut
    # What the file says about itself, beside the verdict (never changing it silently): its Content
    # Credentials (stylefusion.provenance, with ``words``) and its processing history
    # (stylefusion.history, with ``reasons``); None when not read.
    provenance: dict[str, Any] | None = None
    history: dict[str, Any] | None = None
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

    @property
    def deciding_segment(self) -> SegmentResult | None:
        """The segment the video's answer comes from: its most suspicious person's most suspicious
        segment (the rule of :func:`aggregate`); None when nobody was judged."""
        person = most_suspicious(self.people)
        return None if person is None else most_suspicious(person.segments)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable report (crops and latents left out); see :func:`result_schema`."""
        return {
            "schema_version": SCHEMA_VERSION,
            "path": self.path,
            "label": Label(self.label).value,
            "p_fake": None if self.p_fake is None else float(self.p_fake),
            "threshold": float(self.threshold),
            "face_found_ratio": float(self.face_found_ratio),
            "message": self.message,
            "decision": None if self.decision is None else self.decision.to_dict(),
            "video": dict(self.video),  # copies: a caller editing the report must not edit the result
            "checkpoint": dict(self.checkpoint),
            "timings": {k: round(float(v), 4) for k, v in self.timings.items()},
            "people": [p.to_dict() for p in self.people],
            "timeline": [t.to_dict() for t in self.timeline],
            "shots": [dict(x) for x in self.shots],
            "provenance": None if self.provenance is None else dict(self.provenance),
            "history": None if self.history is None else dict(self.history),
            "frames": [f.to_dict() for f in self.frames],
        }


def frame_results(feats: VideoFeatures, attention: np.ndarray,
                  contribution: np.ndarray | None = None) -> tuple[list[FrameResult], np.ndarray]:
    """Per-frame records of one segment's features, the head's attention and (for a trained head)
    each frame's contribution, with the flat latents."""
    flat = feats.style.flatten(1).float().numpy()
    flow = style_flow(flat)
    frames = [
        FrameResult(int(feats.source_indices[i]), float(feats.timestamps[i]), feats.boxes[i].tolist(),
                    float(feats.probs[i]), bool(feats.fallback[i]), float(flow[i]), float(attention[i]),
                    None if contribution is None else float(contribution[i]))
        for i in range(len(feats.source_indices))
    ]
    return frames, flat


class VideoAnswer(NamedTuple):
    """What :func:`aggregate` makes of a video's segments."""

    people: list[PersonResult]
    label: Label
    p_fake: float | None
    message: str
    segment: SegmentResult | None  # the segment the video's answer comes from (None: nobody judged)


def aggregate(segments: list[SegmentResult], timeline: list[TimelineEntry],
              front_end_reason: str | None = None) -> VideoAnswer:
    """People from their segments, the timeline's answers, and the video's answer.

    - A person's answer is their most suspicious judged segment's; with no verdict among their
      segments, ``unsupported`` if one could not be judged for its quality, else ``not_judged``.
    - A window's answer is its most suspicious judged segment's; ``unsupported`` or ``no_face``
      when it has no verdict.
    - The video's answer is its most suspicious judged person's (a fake anywhere makes the video
      fake; with an untrained head every judged answer is ``untrained``); with no verdict
      anywhere, ``unsupported`` when some person could not be judged for the quality of their
      face, or when the front end measured why no face could be judged (``front_end_reason``,
      e.g. "too_dark: ..."), else ``no_face``.
    """
    by_person: dict[int, list[SegmentResult]] = {}
    for s in segments:
        by_person.setdefault(s.person, []).append(s)
    people = []
    for pid in sorted(by_person):
        segs = sorted(by_person[pid], key=lambda s: (s.window, s.start_s))
        top = most_suspicious(segs)
        label = Label(top.label) if top is not None else (
            Label.UNSUPPORTED if _first_unsupported(segs) is not None else Label.NOT_JUDGED)
        people.append(PersonResult(
            id=pid, label=label, p_fake=None if top is None else top.p_fake,
            first_s=min(s.first_s for s in segs), last_s=max(s.last_s for s in segs), segments=segs))
    for entry in timeline:
        if not entry.analysed:
            continue
        here = [s for s in segments if s.window == entry.window]
        entry.people = sorted({s.person for s in here})
        top = most_suspicious(here)
        entry.label = Label(top.label) if top is not None else (
            Label.UNSUPPORTED if _first_unsupported(here) is not None else Label.NO_FACE)
        entry.p_fake = None if top is None else top.p_fake
    top_person = most_suspicious(people)
    if top_person is None:
        unsupported = _first_unsupported(sorted(segments, key=lambda s: (s.window, s.person)))
        if unsupported is not None:
            where = f"person {unsupported.person}, {clock(unsupported.start_s)}–{clock(unsupported.end_s)}"
            return VideoAnswer(people, Label.UNSUPPORTED, None,
                               f"unsupported: {where} ({unsupported.message}); StyleFusion gives no verdict "
                               "on faces it cannot see well", unsupported)
        if front_end_reason:
            return VideoAnswer(people, Label.UNSUPPORTED, None,
                               f"unsupported: {front_end_reason}; StyleFusion gives no verdict on faces it cannot see",
                               None)
        message = ("faces were seen, but no person long enough to judge (each was on screen for less than "
                   "the checkpoint's min_person_s in every shot); StyleFusion judges faces, so no verdict"
                   if segments else "no face was found in the analysed stretches; StyleFusion judges faces, "
                   "so no verdict")
        return VideoAnswer(people, Label.NO_FACE, None, message, None)
    top_segment = most_suspicious(top_person.segments)
    where = f"person {top_person.id}, {clock(top_segment.start_s)}–{clock(top_segment.end_s)}"
    label = Label(top_person.label)
    if label is Label.UNTRAINED:
        message = top_segment.message
    else:
        message = f"{label.value}: {where} ({top_segment.message})"
    return VideoAnswer(people, label, top_person.p_fake, message, top_segment)


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
