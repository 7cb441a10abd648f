"""The decision for one judged segment: calibrated probability, threshold, uncertain band,
out-of-domain flag and input quality, in one rule with one record.

Every number a user sees says how it was obtained (``../shared/docs/design.md``, "Honest outputs"):

- **p_fake** is ``sigmoid(logit / T)``, the head's logit divided by the temperature ``T`` that
  ``stylefusion train`` fitted on validation data (temperature scaling, Guo et al. 2017, "On
  Calibration of Modern Neural Networks"); ``T = 1`` for a checkpoint without calibration.
- **threshold**: ``config.threshold``, chosen on validation videos by ``config.threshold_policy``
  (``fpr:0.05`` by default: at most 5% of validation real videos called fake); the checkpoint
  records the validation true- and false-positive rates there.
- **uncertain band**: split-conformal prediction (Vovk et al. 2005; Angelopoulos & Bates 2021, "A
  Gentle Introduction to Conformal Prediction", section 1) with the least-ambiguous-set score
  ``s = 1 - p(true label)`` (Sadinle et al. 2019) at level ``config.conformal_alpha``: the
  prediction set of a segment is ``{y : 1 - p(y) <= q}`` with ``q`` the conformal quantile of the
  validation scores, so it holds the true label with probability at least ``1 - alpha`` for a
  segment exchangeable with the validation segments. With two labels the set holds both exactly
  when ``1 - q <= p_fake <= q``: that is the band where the answer is ``uncertain``.
- **out of domain**: Mahalanobis distance of the head's fused embedding and the segment's mean
  backbone features (each L2-normalised) to the training segments' (:class:`EmbeddingDensity`,
  mean and shrunk precision stored as safetensors tensors); above the 99th percentile of
  validation scores the segment is
  ``uncertain``, "unlike the videos this detector was trained on", and its p_fake is still given.
- **input quality** (:func:`measure_quality`): face size in source pixels, sharpness and exposure
  of the crops; outside the checkpoint's limits (the training data's 1st/99th percentiles, or the
  documented defaults of :mod:`stylefusion.config`) the segment is ``unsupported``: a "cannot
  judge" answer like ``no_face``, not a verdict.

The rule (:func:`decide`), in order: untrained head → ``untrained``; a quality reason →
``unsupported``; out of domain → ``uncertain``; inside the conformal band (or, for a checkpoint
without calibration, within ``uncertain_margin`` of the threshold) → ``uncertain``; at or above
the threshold → ``fake``; below → ``real``. How segments combine into a person's and a video's
answer is :func:`stylefusion.results.aggregate`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import torch
from torch import nn

from stylefusion.results import DecisionRecord, Label, SegmentResult, VideoFeatures, frame_results

if TYPE_CHECKING:  # pragma: no cover
    from stylefusion.config import StyleFusionConfig
    from stylefusion.faces import FaceTrack

#: Side of the grey image the sharpness is measured on: the crop is resized to it first, so the
#: figure describes detail at the scale of facial features whatever the crop size (a 256-px crop
#: of a 40-px face is an upscaled blur, which a full-resolution Laplacian would call blurry even
#: when the source is sharp; ``face_too_small`` covers small faces).
SHARPNESS_SIDE = 64

#: The reasons a segment cannot be judged, and what each means.
QUALITY_REASONS = {
    "face_too_small": "the face is too small",
    "too_blurry": "the face is too blurry",
    "too_dark": "the face is too dark",
    "too_bright": "the face is too bright (over-exposed)",
}


# ----------------------------------------------------------------------------------------------
# input quality
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Quality:
    """How well one segment shows its face; medians over the frames where a face was found.

    face_px: side of the face box in source pixels (the square crop box divided by 1 + margin);
    sharpness: variance of the Laplacian over variance of the grey crop at 64x64 (:func:`frame_quality`);
    brightness: mean luma (0-255) of the face region (the crop's central 1 / (1 + margin)).
    """

    face_px: float
    sharpness: float
    brightness: float

    def to_dict(self) -> dict[str, float]:
        return {"face_px": round(float(self.face_px), 3), "sharpness": round(float(self.sharpness), 3),
                "brightness": round(float(self.brightness), 3)}

    def as_array(self) -> np.ndarray:
        """``[3]`` float32 (face_px, sharpness, brightness): how the feature cache stores it."""
        return np.array([self.face_px, self.sharpness, self.brightness], np.float32)

    @classmethod
    def from_array(cls, values: Any) -> "Quality | None":
        """Inverse of :meth:`as_array`; None for a missing (NaN) measurement."""
        v = np.asarray(values, np.float64).reshape(-1)
        if len(v) != 3 or not np.isfinite(v).all():
            return None
        return cls(float(v[0]), float(v[1]), float(v[2]))


def frame_quality(crop: np.ndarray, face_margin: float) -> tuple[float, float]:
    """(sharpness, brightness) of one ``[S, S, 3]`` uint8 RGB crop.

    Sharpness is the variance of the Laplacian divided by the variance of the image, both on the
    grey crop at :data:`SHARPNESS_SIDE`: the ratio does not change when the exposure scales the
    pixel values, so a dark face is ``too_dark``, not also ``too_blurry`` (measured on the carphone
    clip: 0.38 sharp, 0.45 at 22% exposure, 0.05 after a Gaussian blur of 1.5 px).
    """
    grey = cv2.cvtColor(np.ascontiguousarray(crop), cv2.COLOR_RGB2GRAY)
    small = cv2.resize(grey, (SHARPNESS_SIDE, SHARPNESS_SIDE), interpolation=cv2.INTER_AREA).astype(np.float32)
    spread = float(small.var())
    sharpness = float(cv2.Laplacian(small, cv2.CV_32F).var()) / spread if spread > 1e-6 else 0.0
    s = grey.shape[0]
    inner = int(round(s / (1.0 + face_margin)))
    a = (s - inner) // 2
    brightness = float(grey[a:a + inner, a:a + inner].mean())
    return sharpness, brightness


def measure_quality(track: "FaceTrack", face_margin: float) -> Quality:
    """The :class:`Quality` of a segment's crops (``FaceTrack``: crops, boxes in source pixels).

    Frames that fell back to a centre crop are left out unless every frame did. Repeated crops of
    a padded segment count once.
    """
    keep = ~np.asarray(track.fallback, bool)
    if not keep.any():
        keep = np.ones(len(track.fallback), bool)
    _, first = np.unique(np.asarray(track.source_indices)[keep], return_index=True)
    idx = np.flatnonzero(keep)[first]
    boxes = np.asarray(track.boxes, np.float64)[idx]
    face_px = float(np.median(np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]))) / (1.0 + face_margin)
    per_frame = np.array([frame_quality(track.crops[i], face_margin) for i in idx])
    return Quality(face_px, float(np.median(per_frame[:, 0])), float(np.median(per_frame[:, 1])))


def quality_reasons(quality: Quality | None, config: "StyleFusionConfig") -> list[str]:
    """The :data:`QUALITY_REASONS` keys that ``quality`` fails under the config's limits."""
    if quality is None:
        return []
    c = config
    reasons = []
    if quality.face_px < c.min_face_px:
        reasons.append("face_too_small")
    if quality.sharpness < c.min_sharpness:
        reasons.append("too_blurry")
    if quality.brightness < c.min_brightness:
        reasons.append("too_dark")
    if quality.brightness > c.max_brightness:
        reasons.append("too_bright")
    return reasons


def quality_limits(config: "StyleFusionConfig") -> dict[str, float]:
    return {"min_face_px": float(config.min_face_px), "min_sharpness": float(config.min_sharpness),
            "min_brightness": float(config.min_brightness), "max_brightness": float(config.max_brightness)}


def _reason_text(reasons: list[str], quality: Quality, config: "StyleFusionConfig") -> str:
    c = config
    detail = {
        "face_too_small": f"face {quality.face_px:.0f} px < {c.min_face_px:g} px",
        "too_blurry": f"sharpness {quality.sharpness:.3f} < {c.min_sharpness:g}",
        "too_dark": f"brightness {quality.brightness:.0f} < {c.min_brightness:g}",
        "too_bright": f"brightness {quality.brightness:.0f} > {c.max_brightness:g}",
    }
    return "; ".join(f"{QUALITY_REASONS[r]} ({detail[r]})" for r in reasons)


# ----------------------------------------------------------------------------------------------
# out of domain
# ----------------------------------------------------------------------------------------------
class EmbeddingDensity(nn.Module):
    """Mahalanobis distance of a segment's out-of-domain features to the training segments' Gaussian.

    The features (:meth:`features`) are three L2-normalised blocks: the head's fused embedding (the
    class token the classifier reads), the segment's mean content vector and its mean style latent.
    The embedding alone misses shifts the head has learnt to ignore (measured on synthetic
    features: AUROC 0.73 for a 1.5x wider feature spread, 0.81 for a mean shift of half the
    spread), though a new camera, compression or generator is exactly such a shift; the backbone
    means catch them (AUROC 1.0 on both) and the embedding keeps what the head attends to.

    ``mean`` [D] and ``precision`` [D, D] (the inverse of a shrunk covariance, fitted by
    ``stylefusion train`` with scikit-learn's Ledoit-Wolf estimator) are buffers, so they travel in
    ``model.safetensors`` as ``ood.mean`` and ``ood.precision``: never pickled.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("precision", torch.eye(dim))

    @staticmethod
    def dim(config: "StyleFusionConfig") -> int:
        """D for a config: attn_dim + content_dim + n_levels * style_dim."""
        return config.attn_dim + config.content_dim + len(config.style_levels) * config.style_dim

    @staticmethod
    def features(embedding: torch.Tensor, content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        """``[N, E]`` embeddings, ``[N, C, Dc]`` content, ``[N, T, L, Ds]`` style → ``[N, D]``."""
        unit = nn.functional.normalize
        return torch.cat([unit(embedding.float(), dim=-1), unit(content.float().mean(1), dim=-1),
                          unit(style.float().flatten(2).mean(1), dim=-1)], dim=-1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``[N, D]`` :meth:`features` → ``[N]`` Mahalanobis distances."""
        d = features.float() - self.mean
        return torch.einsum("nd,de,ne->n", d, self.precision, d).clamp_min(0).sqrt()


# ----------------------------------------------------------------------------------------------
# the rule
# ----------------------------------------------------------------------------------------------
def calibrated_probability(logit: float, temperature: float = 1.0) -> float:
    """``sigmoid(logit / T)`` in float32, as the head computes its probability."""
    return float(torch.sigmoid(torch.tensor(float(logit) / float(temperature), dtype=torch.float32)))


def conformal_band(quantile: float | None) -> tuple[float, float] | None:
    """The p_fake interval where the conformal prediction set holds both labels, or None.

    With the score ``1 - p(y)``, "fake" is in the set when ``p >= 1 - q`` and "real" when
    ``p <= q``: both exactly on ``[1 - q, q]``, empty when ``q < 0.5``.
    """
    if quantile is None or quantile < 0.5:
        return None
    return (1.0 - float(quantile), float(quantile))


def checkpoint_decision(config: "StyleFusionConfig") -> DecisionRecord:
    """The decision settings of a checkpoint, without any segment's values (nothing judged)."""
    c = config
    cal = c.calibration
    record = DecisionRecord(
        calibrated=cal is not None, threshold=float(c.threshold),
        threshold_policy=c.threshold_policy if cal is not None else "fixed (uncalibrated checkpoint)",
        temperature=float(cal.temperature) if cal is not None else 1.0,
        quality_limits=quality_limits(c))
    if cal is None:
        record.band = ((max(0.0, c.threshold - c.uncertain_margin), min(1.0, c.threshold + c.uncertain_margin))
                       if c.trained else None)
        record.band_source = (f"fixed ±{c.uncertain_margin:g} around the threshold (uncalibrated checkpoint)"
                              if c.trained else None)
        return record
    record.val_tpr, record.val_fpr = cal.val_tpr, cal.val_fpr
    if cal.conformal_quantile is not None:
        alpha = float(c.conformal_alpha)
        record.alpha = alpha
        record.band = conformal_band(cal.conformal_quantile)
        record.band_source = (f"split conformal at alpha {alpha:g} on {cal.conformal_n} validation segments: "
                              f"the prediction set holds the true label with probability >= {1 - alpha:.0%}"
                              + (f" (measured on validation: {cal.coverage_val:.1%})"
                                 if cal.coverage_val is not None else ""))
    record.ood_threshold = cal.ood_threshold
    return record


def decide(config: "StyleFusionConfig", logit: float | None, *, ood_score: float | None = None,
           quality: Quality | None = None) -> tuple[Label, str, DecisionRecord]:
    """The label, a one-line reason and the :class:`~stylefusion.results.DecisionRecord` of one
    judged segment (the rule of the module docstring).

    Args:
        logit: the head's raw output for the segment (None: nothing to decide on).
        ood_score: the segment's :class:`EmbeddingDensity` distance (None: not measured).
        quality: the segment's :func:`measure_quality` (None: not measured).
    """
    c = config
    record = checkpoint_decision(c)
    record.quality = quality.to_dict() if quality is not None else None
    record.quality_reasons = quality_reasons(quality, c)
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
    if record.out_of_domain:
        return Label.UNCERTAIN, (f"unlike the videos this detector was trained on (out-of-domain score "
                                 f"{record.ood_score:.2f} > {record.ood_threshold:.2f}); p_fake {p:.3f}"), record
    band = record.band
    if band is not None and band[0] <= p <= band[1]:
        if c.calibration is not None:
            text = (f"p_fake {p:.3f} is in the uncertain band [{band[0]:.3f}, {band[1]:.3f}], where the "
                    f"{1 - c.conformal_alpha:.0%} conformal prediction set holds both labels")
        else:
            text = f"p_fake {p:.3f} is within {c.uncertain_margin:g} of the threshold {c.threshold:.3f}"
        return Label.UNCERTAIN, text, record
    if p >= c.threshold:
        return Label.FAKE, f"p_fake {p:.3f} >= threshold {c.threshold:.3f}", record
    return Label.REAL, f"p_fake {p:.3f} < threshold {c.threshold:.3f}", record


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
        threshold += f" ({d['threshold_policy']})"
        if d.get("val_fpr") is not None and d.get("val_tpr") is not None:
            threshold += (f": on validation data, this threshold flagged {d['val_fpr']:.0%} of real videos and "
                          f"caught {d['val_tpr']:.0%} of fakes")
    facts.append(threshold)
    band = d.get("band")
    if band is not None:
        if d.get("alpha") is not None:
            facts.append(f"uncertain band [{band[0]:.3f}, {band[1]:.3f}], where the {1 - d['alpha']:.0%} conformal "
                         "prediction set holds both labels")
        else:
            facts.append(f"uncertain band [{band[0]:.3f}, {band[1]:.3f}] (a fixed margin: uncalibrated checkpoint)")
    if d.get("ood_score") is not None and d.get("ood_threshold") is not None:
        facts.append(f"out-of-domain score {d['ood_score']:.2f} ({'above' if d['out_of_domain'] else 'within'} "
                     f"the limit {d['ood_threshold']:.2f})")
    if d.get("quality_reasons"):
        reasons = ", ".join(QUALITY_REASONS[r] for r in d["quality_reasons"])
        limits = d.get("quality_limits") or {}
        facts = [f"cannot judge: {reasons} (limits: face >= {limits.get('min_face_px', 0):g} px, sharpness >= "
                 f"{limits.get('min_sharpness', 0):g}, brightness {limits.get('min_brightness', 0):g}-"
                 f"{limits.get('max_brightness', 255):g})"]
    return facts


def judge_segment(config: "StyleFusionConfig", segment: SegmentResult, feats: VideoFeatures, logit: float,
                  attention: np.ndarray, *, ood_score: float | None = None,
                  contributions: Any = None) -> SegmentResult:
    """Fill a judged segment's answer, decision record and per-frame records from the head's outputs.

    ``contributions`` (a :class:`stylefusion.evidence.Contributions`, trained heads only) gives
    each frame's and each clip's contribution to the logit.
    """
    quality = Quality.from_array(feats.quality) if feats.quality is not None else None
    segment.judged = True
    segment.label, segment.message, segment.decision = decide(config, logit, ood_score=ood_score, quality=quality)
    # A probability only where there is an answer: not from an untrained head, not for a face too
    # poor to judge (the record keeps the raw logit, for those who study the detector).
    segment.p_fake = segment.decision.p_fake
    segment.logit = float(logit)
    frame_contrib = None if contributions is None else contributions.frames
    segment.frames, segment.style_latents = frame_results(feats, attention, frame_contrib)
    segment.clip_contributions = None if contributions is None else [float(v) for v in contributions.clips]
    return segment


__all__ = ["Quality", "QUALITY_REASONS", "record_facts", "SHARPNESS_SIDE", "EmbeddingDensity", "calibrated_probability",
           "checkpoint_decision", "conformal_band", "decide", "frame_quality", "judge_segment",
           "measure_quality", "quality_limits", "quality_reasons", "rates_sentence"]
