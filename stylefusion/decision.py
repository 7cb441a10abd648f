"""The decision for one judged segment: calibrated probability, threshold, uncertain band,
out-of-domain flag and input quality, in one rule with one record.

Every number a user sees says how it was obtained ("Honest outputs"):

- **p_fake** is ``sigmoid(logit / T)``, the head's logit divided by the temperature ``T`` that
  ``stylefusion train`` fitted on validation data (temperature scaling, Guo et al. 2017, "On
  Calibration of Modern Neural Networks"); ``T = 1`` for a checkpoint without calibration.
- **threshold** ``t``: ``config.threshold``, chosen on validation videos by
  ``config.threshold_policy`` (``fpr:0.05`` by default: at most 5% of validation real videos called
  fake); the checkpoint records the validation true- and false-positive rates there.
- **conformal prediction set**: split-conformal prediction (Vovk et al. 2005; Angelopoulos & Bates
  2021, "A Gentle Introduction to Conformal Prediction", section 1) with the least-ambiguous-set
  score ``s = 1 - p(true label)`` (Sadinle et al. 2019) at level ``config.conformal_alpha``: the
  prediction set of a segment is ``{y : 1 - p(y) <= q}`` (:func:`prediction_set`) with ``q`` the
  conformal quantile of the validation scores, so it holds the true label with probability at
  least ``1 - alpha`` for a segment exchangeable with the validation segments. With two labels it
  is ``{real}`` below ``min(q, 1 - q)``, ``{fake}`` above ``max(q, 1 - q)``, both labels on
  ``[1 - q, q]`` when ``q >= 0.5`` and *empty* on ``(q, 1 - q)`` when ``q < 0.5``.
- **uncertain band** (:func:`conformal_band`): ``[min(t, q, 1 - q), max(t, q, 1 - q)]``. It always
  contains the threshold, so outside it the set is exactly one label *and* the threshold gives
  that same label; inside it the set holds both labels, none, or the label the threshold does not
  give (q = 0.70, t = 0.82, p = 0.76: the set is {fake} while p < t). A conformal method's answer
  is its set, so ``fake`` and ``real`` are given only outside the band: no answer contradicts its
  own prediction set (``tests/test_decision_rule.py`` proves it over every q, t and p).
- **out of domain**: Mahalanobis distance of the head's fused embedding and the segment's mean
  backbone features (each L2-normalised) to the training segments'
  (:class:`stylefusion.ood.EmbeddingDensity`, mean and shrunk precision stored as safetensors
  tensors); above the 99th percentile of validation scores the segment is ``uncertain``, "unlike
  the videos this detector was trained on", and its p_fake is still given.
- **input quality** (:func:`stylefusion.quality.measure_quality`): face size in source pixels,
  sharpness and exposure of the crops; outside the checkpoint's limits (the training data's
  1st/99th percentiles, or the documented defaults of :mod:`stylefusion.config`) the segment is
  ``unsupported``: a "cannot judge" answer like ``no_face``, not a verdict.

The rule (:func:`decide`), in order: untrained head → ``untrained``; a quality reason →
``unsupported``; out of domain → ``uncertain``; inside the uncertain band (or, for a checkpoint
without calibration, within ``uncertain_margin`` of the threshold) → ``uncertain``; at or above
the threshold → ``fake``; below → ``real``. How segments combine into a person's and a video's
answer is :func:`stylefusion.results.aggregate`.

All of it is one typed record, :class:`DecisionRule`: the threshold and its policy, the
calibration (:class:`~stylefusion.config.CalibrationRecord`: temperature, conformal quantile,
validation rates per unit, out-of-domain threshold), the input-quality limits and the
processing-history limits. It travels with the checkpoint: ``config.json`` stores its fields and
:meth:`DecisionRule.from_config` rebuilds it (the out-of-domain density's mean and precision are
weights, the ``ood.*`` tensors of ``model.safetensors``, applied with the networks). Every function
here takes the rule (or a config, from which the rule is built).

This module needs neither torch nor OpenCV (the networks, the out-of-domain module and the
quality measurement live in their own modules), so the model card and ``config.json`` readers
can use the rule without them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Union

import numpy as np

from stylefusion.config import CalibrationRecord
from stylefusion.history import HISTORY_REASONS, HistoryLimits
from stylefusion.quality import Quality
from stylefusion.results import DecisionRecord, Label, SegmentResult, VideoFeatures, frame_results

if TYPE_CHECKING:  # pragma: no cover
    from stylefusion.config import StyleFusionConfig

#: The reasons a segment cannot be judged, and what each means.
QUALITY_REASONS = {
    "face_too_small": "the face is too small",
    "too_blurry": "the face is too blurry",
    "too_dark": "the face is too dark",
    "too_bright": "the face is too bright (over-exposed)",
}
#: The processing-history reasons, in words (history.py imports PyAV only inside its functions).
HISTORY_WORDS = HISTORY_REASONS


# ----------------------------------------------------------------------------------------------
# the rule's one home
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DecisionRule:
    """Everything that turns a head's outputs into an answer, in one typed record.

    Built from a checkpoint's config (:meth:`from_config`) and stored back into it
    (:meth:`config_fields`), so it travels whole with the weights: ``convert --head``, ``train``
    and ``from_pretrained`` carry it without knowing its parts.
    """

    trained: bool = False
    threshold: float = 0.5
    threshold_policy: str = "fpr:0.05"
    conformal_alpha: float = 0.1
    uncertain_margin: float = 0.1  # the band of trained heads without calibration
    calibration: CalibrationRecord | None = None
    #: min_face_px, min_sharpness, min_brightness, max_brightness (config fields of those names)
    quality: dict[str, float] = field(default_factory=dict)
    history: HistoryLimits = field(default_factory=HistoryLimits)

    @classmethod
    def from_config(cls, config: "StyleFusionConfig") -> "DecisionRule":
        c = config
        return cls(trained=bool(c.trained), threshold=float(c.threshold), threshold_policy=str(c.threshold_policy),
                   conformal_alpha=float(c.conformal_alpha), uncertain_margin=float(c.uncertain_margin),
                   calibration=c.calibration,
                   quality={"min_face_px": float(c.min_face_px), "min_sharpness": float(c.min_sharpness),
                            "min_brightness": float(c.min_brightness), "max_brightness": float(c.max_brightness)},
                   history=HistoryLimits(min_bpp=float(c.min_bpp), max_h264_qp=float(c.max_h264_qp),
                                         min_recapture_score=int(c.min_recapture_score)))

    def config_fields(self) -> dict[str, Any]:
        """The config fields this rule is stored in (``config.replace(**rule.config_fields())``)."""
        return {"trained": self.trained, "threshold": self.threshold, "threshold_policy": self.threshold_policy,
                "conformal_alpha": self.conformal_alpha, "uncertain_margin": self.uncertain_margin,
                "calibration": self.calibration, **self.quality, "min_bpp": self.history.min_bpp,
                "max_h264_qp": self.history.max_h264_qp, "min_recapture_score": self.history.min_recapture_score}


RuleLike = Union[DecisionRule, "StyleFusionConfig"]


def as_rule(rule: RuleLike) -> DecisionRule:
    """``rule`` itself, or the rule of a config."""
    return rule if isinstance(rule, DecisionRule) else DecisionRule.from_config(rule)


# ----------------------------------------------------------------------------------------------
# input quality (measured by stylefusion.quality; judged here)
# ----------------------------------------------------------------------------------------------
def quality_reasons(quality: Quality | None, rule: RuleLike) -> list[str]:
    """The :data:`QUALITY_REASONS` keys that ``quality`` fails under the rule's limits."""
    if quality is None:
        return []
    q = as_rule(rule).quality
    reasons = []
    if quality.face_px < q["min_face_px"]:
        reasons.append("face_too_small")
    if quality.sharpness < q["min_sharpness"]:
        reasons.append("too_blurry")
    if quality.brightness < q["min_brightness"]:
        reasons.append("too_dark")
    if quality.brightness > q["max_brightness"]:
        reasons.append("too_bright")
    return reasons


def quality_limits(rule: RuleLike) -> dict[str, float]:
    return dict(as_rule(rule).quality)


def _reason_text(reasons: list[str], quality: Quality, rule: DecisionRule) -> str:
    q = rule.quality
    detail = {
        "face_too_small": f"face {quality.face_px:.0f} px < {q['min_face_px']:g} px",
        "too_blurry": f"sharpness {quality.sharpness:.3f} < {q['min_sharpness']:g}",
        "too_dark": f"brightness {quality.brightness:.0f} < {q['min_brightness']:g}",
        "too_bright": f"brightness {quality.brightness:.0f} > {q['max_brightness']:g}",
    }
    return "; ".join(f"{QUALITY_REASONS[r]} ({detail[r]})" for r in reasons)


# ----------------------------------------------------------------------------------------------
# the rule
# ----------------------------------------------------------------------------------------------
def calibrated_probability(logit: float, temperature: float = 1.0) -> float:
    """``sigmoid(logit / T)``, rounded to float32 as the head's own probability is (computed in
    float64 on either side of 0, so a large logit neither overflows nor loses the small tail)."""
    z = float(logit) / float(temperature)
    p = 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))
    return float(np.float32(p))


def prediction_set(p_fake: float, quantile: float) -> frozenset[Label]:
    """The conformal prediction set ``{y : 1 - p(y) <= q}`` of one segment.

    "real" is in it when ``1 - (1 - p) = p <= q``, "fake" when ``1 - p <= q``: the same comparisons
    as :func:`stylefusion.research.calibrate.prediction_sets`, so the rule and the measured
    coverage speak of the same sets, to the last bit.
    """
    p, q = float(p_fake), float(quantile)
    return frozenset(label for label, inside in ((Label.REAL, p <= q), (Label.FAKE, 1.0 - p <= q)) if inside)


def conformal_band(quantile: float | None, threshold: float) -> tuple[float, float] | None:
    """The p_fake interval answered ``uncertain``: ``[min(t, q, 1 - q), max(t, q, 1 - q)]``, or None
    without a conformal quantile.

    Above ``max(q, 1 - q)`` the prediction set is {fake}, below ``min(q, 1 - q)`` it is {real}; in
    between it holds both labels (``q >= 0.5``) or none (``q < 0.5``). Stretching that interval to
    the threshold ``t`` covers the p_fake whose set is a single label the threshold contradicts.
    Outside the band, then, the set is exactly the label the threshold gives.
    """
    if quantile is None:
        return None
    q, t = float(quantile), float(threshold)
    return min(t, q, 1.0 - q), max(t, q, 1.0 - q)


def _set_words(members: frozenset[Label]) -> str:
    if not members:
        return "is empty (no label fits at this level)"
    if len(members) == 2:
        return "holds both labels"
    return f"is {{{next(iter(members))}}}"


def unit_threshold(quantiles: list[float], rate: float, segments: int) -> tuple[float, float]:
    """(threshold, quantile level) that calls a real video of ``segments`` segments fake with
    probability ``rate``, given the real segments' score ``quantiles`` at evenly spaced levels."""
    q = np.asarray(quantiles, np.float64)
    level = (1.0 - rate) ** (1.0 / max(1, int(segments)))
    t = float(np.interp(level, np.linspace(0.0, 1.0, len(q)), q))
    return float(min(1.0, np.nextafter(t, 2.0))), level  # strictly above the real scores at that level


def threshold_for(rule: RuleLike, segments: int = 1) -> tuple[float, str | None]:
    """The threshold for a video judged on ``segments`` segments, and how it was obtained.

    A video's answer is its most suspicious segment's, so a real video judged on n segments gets n
    chances to be called fake: one threshold for all would flag ``1 - (1 - r)^n`` of real videos
    instead of ``r``. For the policy ``fpr:r`` and a checkpoint that kept its validation real
    segments' score quantiles (``calibration.real_segment_quantiles``, empirical CDF ``F``), the
    threshold is ``F^-1((1 - r)^(1/n))``: a real video of n segments whose scores behave like the
    validation real segments' is called fake with probability ``r`` (exact for independent
    segments, at most ``r`` for positively correlated ones, e.g. one person's windows). Otherwise
    (other policies, older checkpoints): ``config.threshold``, the same for every video.
    """
    from stylefusion.config import parse_threshold_policy

    c = as_rule(rule)
    cal = c.calibration
    n = max(1, int(segments))
    if cal is None or not cal.real_segment_quantiles:
        return float(c.threshold), None
    kind, rate = parse_threshold_policy(c.threshold_policy)
    if kind != "fpr":
        return float(c.threshold), None
    t, level = unit_threshold(cal.real_segment_quantiles, float(rate), n)
    unit = "one segment" if n == 1 else f"{n} segments"
    return t, (f"set so that a real video judged on {unit} is called fake with probability {rate:.0%}: the "
               f"{level:.4f} quantile of the validation real segments' p_fake (level (1 - {rate:g})^(1/{n}))")


def _coverage_words(cal: CalibrationRecord) -> str:
    """" (measured on validation: 91.0% of segments; 88.0% of videos, each by its deciding segment)"."""
    parts = []
    if cal.coverage_val is not None:
        parts.append(f"{cal.coverage_val:.1%} of segments")
    if cal.coverage_val_videos is not None:
        parts.append(f"{cal.coverage_val_videos:.1%} of videos, each by the segment that decides its answer")
    return f" (measured on validation: {'; '.join(parts)})" if parts else ""


def checkpoint_decision(rule: RuleLike, segments: int = 1) -> DecisionRecord:
    """The decision settings of a checkpoint for a video judged on ``segments`` segments, without
    any segment's values."""
    c = as_rule(rule)
    cal = c.calibration
    threshold, threshold_source = threshold_for(c, segments)
    record = DecisionRecord(
        calibrated=cal is not None, threshold=threshold,
        threshold_policy=c.threshold_policy if cal is not None else "fixed (uncalibrated checkpoint)",
        segments=max(1, int(segments)), threshold_source=threshold_source,
        temperature=float(cal.temperature) if cal is not None else 1.0,
        quality_limits=dict(c.quality))
    if cal is None:
        record.band = ((max(0.0, c.threshold - c.uncertain_margin), min(1.0, c.threshold + c.uncertain_margin))
                       if c.trained else None)
        record.band_source = (f"fixed ±{c.uncertain_margin:g} around the threshold (uncalibrated checkpoint)"
                              if c.trained else None)
        return record
    record.val_tpr, record.val_fpr = cal.val_tpr, cal.val_fpr
    group = cal.val_by_segments.get(str(record.segments)) if threshold_source else None
    if threshold_source:  # the validation rates at this unit: videos judged on as many segments
        record.val_fpr = group.get("fpr") if group else None
        record.val_tpr = group.get("tpr") if group else None
    if cal.conformal_quantile is not None:
        alpha, q = float(c.conformal_alpha), float(cal.conformal_quantile)
        record.alpha = alpha
        record.band = conformal_band(q, threshold)
        record.band_source = (f"split conformal at alpha {alpha:g} on {cal.conformal_n} validation segments: "
                              f"the prediction set holds the true label with probability >= {1 - alpha:.0%}"
                              + _coverage_words(cal)
                              + f"; band = [min(t, q, 1 - q), max(t, q, 1 - q)] with q {q:.4f} and the threshold "
                              f"t {threshold:.4f}: it holds every p_fake whose set is not exactly the threshold's "
                              "label, so a fake or real answer never contradicts its prediction set")
    record.ood_threshold = cal.ood_threshold
    return record


def decide(rule: RuleLike, logit: float | None, *, ood_score: float | None = None,
           quality: Quality | None = None, history: tuple[list[str], list[str]] | None = None,
           segments: int = 1) -> tuple[Label, str, DecisionRecord]:
    """The label, a one-line reason and the :class:`~stylefusion.results.DecisionRecord` of one
    judged segment (the rule of the module docstring).

    ``fake`` or ``real`` is given only when the conformal prediction set is exactly that label:
    the band check says so, and the set itself is checked too, so that rounding at the band's
    edges cannot let a contradiction through.

    Args:
        logit: the head's raw output for the segment (None: nothing to decide on).
        ood_score: the segment's :class:`~stylefusion.ood.EmbeddingDensity` distance (None: not measured).
        quality: the segment's :func:`~stylefusion.quality.measure_quality` (None: not measured).
        history: the file's processing-history reasons and their sentences
            (:func:`stylefusion.history.history_reasons` / ``history_reason_text`` under the
            checkpoint's limits): a verdict becomes ``uncertain``, with p_fake still given.
        segments: the judged segments of the video this segment belongs to: the threshold is the
            one for a video judged on that many (:func:`threshold_for`).
    """
    c = as_rule(rule)
    record = checkpoint_decision(c, segments)
    threshold = record.threshold
    record.quality = quality.to_dict() if quality is not None else None
    record.quality_reasons = quality_reasons(quality, c)
    reasons, reason_text = history if history is not None else ([], [])
    record.history_reasons = list(reasons)
    if ood_score is not None and record.ood_threshold is not None:
        record.ood_score = float(ood_score)
        record.out_of_domain = bool(ood_score > record.ood_threshold)
    if not c.trained or logit is None:
        return Label.UNTRAINED, ("this checkpoint's fusion head is untrained: its output is not a verdict. "
                                 "Load a trained checkpoint to detect deepfakes."), record
    record.logit = float(logit)
    if record.quality_reasons:  # cannot judge: no probability either (the raw logit stays in the record)
        return Label.UNSUPPORTED, "cannot judge: " + _reason_text(record.quality_reasons, quality, c), record
    p = calibrated_probability(logit, record.temperature)
    record.p_fake = p
    # Reasons to doubt any verdict on this input, all of them said: out of domain, and the file's
    # processing history (heavily recompressed, a possible screen recording).
    doubts = list(reason_text) if record.history_reasons else []
    if record.out_of_domain:
        doubts.insert(0, f"unlike the videos this detector was trained on (out-of-domain score "
                         f"{record.ood_score:.2f} > {record.ood_threshold:.2f})")
    if doubts:
        return Label.UNCERTAIN, f"{'; '.join(doubts)}; p_fake {p:.3f}", record
    label = Label.FAKE if p >= threshold else Label.REAL
    band = record.band
    in_band = band is not None and band[0] <= p <= band[1]
    quantile = c.calibration.conformal_quantile if c.calibration is not None else None
    if quantile is not None:
        members = prediction_set(p, quantile)
        if in_band or members != {label}:
            where = "is in" if in_band else "is on the edge of"
            text = (f"p_fake {p:.3f} {where} the uncertain band [{band[0]:.3f}, {band[1]:.3f}]: the "
                    f"{1 - c.conformal_alpha:.0%} conformal prediction set {_set_words(members)}")
            if len(members) == 1 and members != {label}:
                side = "below" if label is Label.REAL else "at or above"
                text += f" but p_fake is {side} the threshold {threshold:.3f}"
            return Label.UNCERTAIN, text, record
    elif in_band:
        return Label.UNCERTAIN, f"p_fake {p:.3f} is within {c.uncertain_margin:g} of the threshold {threshold:.3f}", record
    if label is Label.FAKE:
        return label, f"p_fake {p:.3f} >= threshold {threshold:.3f}", record
    return label, f"p_fake {p:.3f} < threshold {threshold:.3f}", record


def rates_sentence(record: DecisionRecord) -> str:
    """"on validation data, this threshold flagged 5% of real videos and caught 87% of fakes"."""
    if record.val_fpr is None or record.val_tpr is None:
        return ""
    return (f"on validation data, this threshold flagged {record.val_fpr:.0%} of real videos and caught "
            f"{record.val_tpr:.0%} of fakes")


def record_facts(record: DecisionRecord | dict[str, Any]) -> list[str]:
    """The numbers behind one answer, each with how it was obtained: what the CLI's line (joined by
    "; ") and the app (as a list) show. Takes a record or its ``to_dict()``."""
    d = record.to_dict() if isinstance(record, DecisionRecord) else record
    facts = []
    if d.get("p_fake") is not None:
        how = (f"calibrated: temperature {d['temperature']:.2f} fitted on validation data" if d["calibrated"]
               else "uncalibrated checkpoint: raw sigmoid")
        facts.append(f"p_fake {d['p_fake']:.3f} ({how})")
    threshold = f"threshold {d['threshold']:.3f}"
    if d["calibrated"]:
        threshold += f" ({d['threshold_policy']}"
        n = int(d.get("segments") or 1)
        if d.get("threshold_source"):
            threshold += f", for a video judged on {'one segment' if n == 1 else f'{n} segments'}: {d['threshold_source']}"
        threshold += ")"
        unit = ("real videos" if not d.get("threshold_source") else
                f"real validation videos judged on {'one segment' if n == 1 else f'{n} segments'}, as this one")
        if d.get("val_fpr") is not None and d.get("val_tpr") is not None:
            threshold += (f": on validation data, this threshold flagged {d['val_fpr']:.0%} of {unit} and "
                          f"caught {d['val_tpr']:.0%} of fakes")
        elif d.get("val_fpr") is not None:
            threshold += f": on validation data, this threshold flagged {d['val_fpr']:.0%} of {unit}"
        elif d.get("threshold_source"):
            threshold += f" (no validation video was judged on {n} segments to check it on)"
    facts.append(threshold)
    band = d.get("band")
    if band is not None:
        if d.get("alpha") is not None:
            facts.append(f"uncertain band [{band[0]:.3f}, {band[1]:.3f}], where the {1 - d['alpha']:.0%} conformal "
                         "prediction set is not exactly the threshold's label (both labels, none, or the other one)")
        else:
            facts.append(f"uncertain band [{band[0]:.3f}, {band[1]:.3f}] (a fixed margin: uncalibrated checkpoint)")
    if d.get("ood_score") is not None and d.get("ood_threshold") is not None:
        facts.append(f"out-of-domain score {d['ood_score']:.2f} ({'above' if d['out_of_domain'] else 'within'} "
                     f"the limit {d['ood_threshold']:.2f})")
    if d.get("history_reasons"):
        facts.append("uncertain whatever p_fake: " + ", ".join(HISTORY_WORDS.get(r, r) for r in d["history_reasons"])
                     + " (the file's processing history; its figures are in the result's history)")
    if d.get("quality_reasons"):
        reasons = ", ".join(QUALITY_REASONS[r] for r in d["quality_reasons"])
        limits = d.get("quality_limits") or {}
        facts = [f"cannot judge: {reasons} (limits: face >= {limits.get('min_face_px', 0):g} px, sharpness >= "
                 f"{limits.get('min_sharpness', 0):g}, brightness {limits.get('min_brightness', 0):g}-"
                 f"{limits.get('max_brightness', 255):g})"]
    return facts


def judge_segment(rule: RuleLike, segment: SegmentResult, feats: VideoFeatures, logit: float,
                  attention: np.ndarray, *, ood_score: float | None = None,
                  contributions: Any = None, history: tuple[list[str], list[str]] | None = None,
                  segments: int = 1) -> SegmentResult:
    """Fill a judged segment's answer, decision record and per-frame records from the head's outputs.

    ``contributions`` (a :class:`stylefusion.evidence.Contributions`, trained heads only) gives
    each frame's and each clip's contribution to the logit.
    """
    quality = Quality.from_array(feats.quality) if feats.quality is not None else None
    segment.judged = True
    segment.label, segment.message, segment.decision = decide(rule, logit, ood_score=ood_score, quality=quality,
                                                              history=history, segments=segments)
    # A probability only where there is an answer: not from an untrained head, not for a face too
    # poor to judge (the record keeps the raw logit, for those who study the detector).
    segment.p_fake = segment.decision.p_fake
    segment.logit = float(logit)
    frame_contrib = None if contributions is None else contributions.frames
    segment.frames, segment.style_latents = frame_results(feats, attention, frame_contrib)
    segment.clip_contributions = None if contributions is None else [float(v) for v in contributions.clips]
    return segment


__all__ = ["DecisionRule", "HISTORY_WORDS", "QUALITY_REASONS", "as_rule", "calibrated_probability", "checkpoint_decision", "conformal_band", "decide",
           "judge_segment", "prediction_set", "quality_limits", "quality_reasons", "rates_sentence", "record_facts",
           "threshold_for", "unit_threshold"]
