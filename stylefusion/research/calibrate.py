"""Calibration of a trained head on validation data: what makes the detector's answers honest.

``stylefusion train`` calls :func:`calibrate_head` after the best epoch is chosen; the result goes
into the checkpoint (``config.calibration``, ``config.threshold``, the input-quality limits, and
the ``ood.*`` tensors), and :mod:`stylefusion.decision` applies it at inference. Each step, on the
validation split unless said otherwise:

1. **Temperature scaling** (Guo et al. 2017): one scalar ``T`` minimising the negative
   log-likelihood of ``sigmoid(logit / T)`` on the validation segments (scipy's bounded scalar
   minimiser on ``log T``). Segment-level steps (1, 3, 6) read the segments whose own label is
   known, and of each fake video of several judged people (a multiple-instance bag: at least one
   of them is fake) its most suspicious segment, the one the video's answer is
   (:meth:`stylefusion.research.data.CachedFeatures.instances`). It keeps the ranking, so AUC and the conformal sets are unchanged.
2. **Threshold** by ``config.threshold_policy`` on validation *videos* (a video's p_fake is the
   max over its segments, the verdict rule): ``fpr:R`` puts it just above the real videos' scores
   so that at most a share R of them is called fake (:func:`threshold_at_fpr`), ``youden`` maximises
   balanced accuracy, a number is taken as it is. The true- and false-positive rates there are
   recorded for the user.
3. **Split-conformal quantile** ``q`` at ``config.conformal_alpha`` on the validation segments
   (:func:`conformal_quantile`; the references are in :mod:`stylefusion.decision`). Fitting the
   temperature on the same data does not weaken the guarantee: the scores ``1 - p(y)`` are
   ``sigmoid(-+ logit / T)``, so their order, and hence which segments fall inside the quantile,
   does not depend on ``T``. The uncertain band is not stored: inference derives it from ``q`` and
   the threshold ``t`` chosen in step 2, ``[min(t, q, 1 - q), max(t, q, 1 - q)]``
   (:func:`stylefusion.decision.conformal_band`), the p_fake whose prediction set is not exactly
   the threshold's label, so that no ``fake``/``real`` answer contradicts its set.
4. **Out of domain**: the *training* segments' out-of-domain features (the head's fused embedding
   and the mean content and style features, each L2-normalised:
   :meth:`stylefusion.ood.EmbeddingDensity.features`) give a mean and a Ledoit-Wolf shrunk
   precision (scikit-learn); the threshold is the 99th percentile of the validation segments'
   Mahalanobis distances.
5. **Input quality**: the training segments' face size and sharpness (1st percentiles) and
   brightness (1st and 99th), where the cache measured at least 100 of them; else the documented
   defaults (:data:`stylefusion.config.QUALITY_DEFAULTS`). Likewise the **processing-history
   limits** from the training videos' histories (:func:`history_limits_from`: 99th percentile of
   the H.264 quantiser, 1st of bits per pixel, the recapture score 99% stay under), where at least
   100 videos were measured; else :data:`stylefusion.config.HISTORY_DEFAULTS`.
6. **Metrics before and after**: expected calibration error (15 equal-width bins of p_fake, the
   gap between the mean p_fake and the share of fakes in each, weighted by the bin's size) and the
   Brier score, on validation segments.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from stylefusion.config import QUALITY_DEFAULTS, CalibrationRecord, StyleFusionConfig, parse_threshold_policy
from stylefusion.decision import conformal_band
from stylefusion.ood import EmbeddingDensity

logger = logging.getLogger(__name__)

#: Bins of the expected calibration error and of the reliability diagram.
ECE_BINS = 15
#: Percentile of validation out-of-domain scores above which a segment is out of domain.
OOD_PERCENTILE = 99.0
#: Percentiles of the training data's crop measurements that become the input-quality limits.
QUALITY_LOW, QUALITY_HIGH = 1.0, 99.0
#: Temperatures searched (log-uniformly). On a validation set the head separates perfectly the
#: NLL keeps falling as T shrinks, toward probabilities of exactly 0 and 1 that a few dozen
#: videos cannot support; the lower bound stops that (heads trained with mixup are usually
#: under-confident, T about 0.5, well inside the range).
TEMPERATURE_RANGE = (0.25, 10.0)
#: Fewer measured training segments than this give no usable 1st/99th percentile (it would be
#: the extreme sample): the documented defaults are kept.
QUALITY_MIN_SEGMENTS = 100


# ----------------------------------------------------------------------------------------------
# probabilities
# ----------------------------------------------------------------------------------------------
def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


def _nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    z = logits / temperature
    # log(1 + e^z) - y z, computed stably
    return float(np.mean(np.logaddexp(0.0, z) - labels * z))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature minimising the NLL of ``sigmoid(logits / T)`` (1.0 with a single class)."""
    from scipy.optimize import minimize_scalar

    z = np.asarray(logits, np.float64).reshape(-1)
    y = np.asarray(labels, np.float64).reshape(-1)
    if len(np.unique(y)) < 2 or len(z) < 2:
        return 1.0
    lo, hi = (math.log(v) for v in TEMPERATURE_RANGE)
    res = minimize_scalar(lambda t: _nll(z, y, math.exp(t)), bounds=(lo, hi), method="bounded",
                          options={"xatol": 1e-4})
    return float(math.exp(res.x))


def expected_calibration_error(labels: np.ndarray, p_fake: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """Sum over equal-width bins of p_fake of (bin share) x |share of fakes - mean p_fake|."""
    y = np.asarray(labels, np.float64).reshape(-1)
    p = np.asarray(p_fake, np.float64).reshape(-1)
    if not len(p):
        return float("nan")
    bins = np.minimum((p * n_bins).astype(int), n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        sel = bins == b
        if sel.any():
            ece += sel.mean() * abs(y[sel].mean() - p[sel].mean())
    return float(ece)


def brier_score(labels: np.ndarray, p_fake: np.ndarray) -> float:
    from sklearn.metrics import brier_score_loss

    return float(brier_score_loss(np.asarray(labels).astype(int), np.asarray(p_fake, np.float64)))


def reliability(labels: np.ndarray, p_fake: np.ndarray, n_bins: int = ECE_BINS) -> dict[str, list[float]]:
    """The reliability diagram's points: per non-empty bin, mean p_fake, share of fakes, count."""
    y = np.asarray(labels, np.float64).reshape(-1)
    p = np.asarray(p_fake, np.float64).reshape(-1)
    bins = np.minimum((p * n_bins).astype(int), n_bins - 1)
    out: dict[str, list[float]] = {"mean_p": [], "fake_share": [], "count": []}
    for b in range(n_bins):
        sel = bins == b
        if sel.any():
            out["mean_p"].append(float(p[sel].mean()))
            out["fake_share"].append(float(y[sel].mean()))
            out["count"].append(int(sel.sum()))
    return out


# ----------------------------------------------------------------------------------------------
# threshold
# ----------------------------------------------------------------------------------------------
def threshold_at_fpr(labels: np.ndarray, scores: np.ndarray, target: float) -> float:
    """The lowest threshold that calls at most ``target`` of the real (label 0) scores fake.

    With ``k = floor(target * n_real)`` real scores allowed at or above it, the threshold lies
    halfway between the (k+1)-th highest real score and the next higher score of the data (so it
    is on no validation score and catches every fake above that real).
    """
    y = np.asarray(labels).astype(int).reshape(-1)
    s = np.asarray(scores, np.float64).reshape(-1)
    real = np.sort(s[y == 0])[::-1]
    if not len(real):
        return 0.5
    k = int(math.floor(target * len(real) + 1e-9))
    if k >= len(real):
        return float(min(real.min(), 1.0))
    pivot = real[k]  # the highest real score that must stay below the threshold
    above = s[s > pivot]
    upper = above.min() if len(above) else min(1.0, pivot + 1e-6)
    return float(np.clip((pivot + upper) / 2, 0.0, 1.0))


def rates_at(labels: np.ndarray, scores: np.ndarray, threshold: float) -> tuple[float | None, float | None]:
    """(TPR, FPR) of ``scores >= threshold``; None for a class with no sample."""
    y = np.asarray(labels).astype(int).reshape(-1)
    flagged = np.asarray(scores, np.float64).reshape(-1) >= threshold
    tpr = float(flagged[y == 1].mean()) if (y == 1).any() else None
    fpr = float(flagged[y == 0].mean()) if (y == 0).any() else None
    return tpr, fpr


def choose_threshold(policy: str, labels: np.ndarray, scores: np.ndarray) -> tuple[float, str]:
    """(threshold, a sentence saying how) for a ``threshold_policy`` on validation video scores."""
    from stylefusion.research.metrics import calibrate_threshold

    kind, value = parse_threshold_policy(policy)
    y = np.asarray(labels).astype(int)
    if kind == "fixed":
        return float(value), f"fixed at {value:g} (threshold_policy)"
    if kind == "youden":
        return calibrate_threshold(y, scores)
    n_real = int((y == 0).sum())
    if n_real == 0:
        return 0.5, f"default 0.5: the validation data has no real video for the policy fpr:{value:g}"
    t = threshold_at_fpr(y, scores, value)
    return t, f"false-positive rate at most {value:.0%} on val ({n_real} real videos, {len(y) - n_real} fake)"


# ----------------------------------------------------------------------------------------------
# conformal prediction
# ----------------------------------------------------------------------------------------------
def lac_scores(labels: np.ndarray, p_fake: np.ndarray) -> np.ndarray:
    """The least-ambiguous-set nonconformity scores ``1 - p(true label)``."""
    y = np.asarray(labels).astype(int).reshape(-1)
    p = np.asarray(p_fake, np.float64).reshape(-1)
    return np.where(y == 1, 1.0 - p, p)


def conformal_quantile(scores: np.ndarray, alpha: float) -> float:
    """The split-conformal quantile: the ``ceil((n + 1)(1 - alpha))``-th smallest calibration score.

    Angelopoulos & Bates 2021, section 1: with this ``q`` the set ``{y : s(x, y) <= q}`` holds the
    true label with probability at least ``1 - alpha`` for an exchangeable new point. When
    ``(n + 1)(1 - alpha) > n`` no finite quantile gives the guarantee: 1.0, the largest possible
    score, makes every set hold both labels.
    """
    s = np.sort(np.asarray(scores, np.float64).reshape(-1))
    n = len(s)
    k = int(math.ceil((n + 1) * (1 - alpha)))
    if n == 0 or k > n:
        return 1.0
    return float(s[k - 1])


def prediction_sets(p_fake: np.ndarray, quantile: float) -> np.ndarray:
    """``[N, 2]`` bool: whether "real" (column 0) and "fake" (column 1) are in each set (the same
    comparisons as :func:`stylefusion.decision.prediction_set`, which the detector answers by)."""
    p = np.asarray(p_fake, np.float64).reshape(-1)
    return np.stack([p <= quantile, 1.0 - p <= quantile], axis=1)


def coverage(labels: np.ndarray, p_fake: np.ndarray, quantile: float) -> float:
    """Share of samples whose prediction set holds their label."""
    y = np.asarray(labels).astype(int).reshape(-1)
    sets = prediction_sets(p_fake, quantile)
    return float(sets[np.arange(len(y)), y].mean()) if len(y) else float("nan")


# ----------------------------------------------------------------------------------------------
# out of domain
# ----------------------------------------------------------------------------------------------
def fit_density(features: torch.Tensor | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean [D], precision [D, D]) of out-of-domain features (``EmbeddingDensity.features``),
    with a Ledoit-Wolf shrunk covariance."""
    from sklearn.covariance import LedoitWolf

    x = torch.as_tensor(features).double().numpy()
    lw = LedoitWolf().fit(x)
    return torch.from_numpy(lw.location_).float(), torch.from_numpy(lw.precision_).float()


# ----------------------------------------------------------------------------------------------
# input quality
# ----------------------------------------------------------------------------------------------
def _ordinal(value: float) -> str:
    n = int(value)
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def quality_limits_from(quality: torch.Tensor | np.ndarray, config: StyleFusionConfig) -> tuple[dict[str, float], str]:
    """Input-quality limits from the training segments' measurements [N, 3], and where they came from."""
    q = np.asarray(quality, np.float64).reshape(-1, 3)
    q = q[np.isfinite(q).all(axis=1)]
    defaults = {k: float(v) for k, v in QUALITY_DEFAULTS.items()}
    if not len(q):
        return defaults, ("documented defaults: the training cache records no crop measurements "
                          "(extracted before they existed; extract again to record them)")
    if len(q) < QUALITY_MIN_SEGMENTS:
        return defaults, (f"documented defaults: {len(q)} measured training segments are too few for "
                          f"{_ordinal(QUALITY_LOW)} and {_ordinal(QUALITY_HIGH)} percentiles "
                          f"(at least {QUALITY_MIN_SEGMENTS} are needed)")
    low = np.percentile(q, QUALITY_LOW, axis=0)
    high = np.percentile(q, QUALITY_HIGH, axis=0)
    limits = {"min_face_px": float(low[0]), "min_sharpness": float(low[1]),
              "min_brightness": float(low[2]), "max_brightness": float(high[2])}
    return limits, (f"percentiles of the {len(q)} training segments' measurements: {_ordinal(QUALITY_LOW)} of "
                    f"face size, sharpness and brightness, {_ordinal(QUALITY_HIGH)} of brightness")


#: Fewer training videos with a measured processing history than this give no usable percentile:
#: the documented defaults are kept (as for the quality limits).
HISTORY_MIN_VIDEOS = 100


def history_limits_from(records: list[dict[str, str]]) -> tuple[dict[str, float | int], str]:
    """Processing-history limits from the training videos' histories (the cache headers'
    ``history``, :func:`stylefusion.research.cache.history_summary`), and where they came from.

    As the quality limits are: what 99% of the training videos pass. ``max_h264_qp``: the 99th
    percentile of the mean quantiser of the H.264 videos; ``min_bpp``: the 1st percentile of bits
    per pixel; ``min_recapture_score``: one above the 99th percentile of the recapture scores, and
    never below the documented default (one weak sign, such as a 23.67 fps rate, is common in camera
    footage). A limit whose videos are fewer than :data:`HISTORY_MIN_VIDEOS` keeps its default.
    Each file counts once (a self-blended pseudo-fake shares its real video's file).
    """
    from stylefusion.config import HISTORY_DEFAULTS

    seen: dict[str, dict[str, Any]] = {}
    for r in records:
        text = r.get("history") or ""
        if not text or r.get("path", "") in seen:
            continue
        try:
            h = json.loads(text)
        except ValueError:
            continue
        if isinstance(h, dict):
            seen[r.get("path", str(len(seen)))] = h
    limits: dict[str, float | int] = dict(HISTORY_DEFAULTS)
    qp = [float(h["mean_qp"]) for h in seen.values() if h.get("codec") == "h264" and isinstance(h.get("mean_qp"), (int, float))]
    bpp = [float(h["bpp"]) for h in seen.values() if isinstance(h.get("bpp"), (int, float))]
    score = [int(h["recapture_score"]) for h in seen.values() if isinstance(h.get("recapture_score"), int)]
    parts, kept = [], []
    n = HISTORY_MIN_VIDEOS
    if len(qp) >= n:
        limits["max_h264_qp"] = round(float(np.percentile(qp, QUALITY_HIGH)), 3)
        parts.append(f"{_ordinal(QUALITY_HIGH)} percentile of the mean H.264 quantiser of {len(qp)} videos")
    else:
        kept.append(f"max_h264_qp ({len(qp)} H.264 videos measured)")
    if len(bpp) >= n:
        limits["min_bpp"] = round(float(np.percentile(bpp, QUALITY_LOW)), 6)
        parts.append(f"{_ordinal(QUALITY_LOW)} percentile of bits per pixel of {len(bpp)} videos")
    else:
        kept.append(f"min_bpp ({len(bpp)} videos measured)")
    if len(score) >= n:
        limits["min_recapture_score"] = max(int(HISTORY_DEFAULTS["min_recapture_score"]),
                                            int(math.floor(np.percentile(score, QUALITY_HIGH))) + 1)
        parts.append(f"recapture score above the {_ordinal(QUALITY_HIGH)} percentile of {len(score)} videos "
                     f"(at least {HISTORY_DEFAULTS['min_recapture_score']})")
    else:
        kept.append(f"min_recapture_score ({len(score)} videos measured)")
    if not parts:
        why = ("the training cache records no processing history (extracted before it was measured; extract "
               "again to record it)" if not seen else
               f"{len(seen)} training videos with a measured history are too few (at least {n} are needed)")
        return limits, f"documented defaults: {why}"
    source = "training videos: " + "; ".join(parts)
    if kept:
        source += f"; documented defaults for {', '.join(kept)}, fewer than {n}"
    return limits, source


# ----------------------------------------------------------------------------------------------
# all of it
# ----------------------------------------------------------------------------------------------
@dataclass
class Calibration:
    """What :func:`calibrate_head` gives the checkpoint."""

    record: CalibrationRecord
    threshold: float
    threshold_source: str
    quality_limits: dict[str, float]  # config fields min_face_px, min_sharpness, min/max_brightness
    ood_state: dict[str, torch.Tensor]  # "ood.mean", "ood.precision"
    val_p_fake: np.ndarray  # per val video, calibrated (max over its segments)
    #: config fields max_h264_qp, min_bpp, min_recapture_score (from the training videos' histories)
    history_limits: dict[str, float | int] = field(default_factory=dict)

    def config_changes(self) -> dict[str, Any]:
        """The config fields this calibration sets (``config.replace(**changes)``)."""
        return {"threshold": float(self.threshold), "calibration": self.record, **self.quality_limits,
                **self.history_limits}


@torch.no_grad()
def head_outputs(head: torch.nn.Module, content: torch.Tensor, style: torch.Tensor,
                 batch_size: int = 256) -> tuple[np.ndarray, torch.Tensor]:
    """(logits [N] float64, embeddings [N, D] on the CPU) of N segments, in eval mode."""
    device = next(head.parameters()).device
    logits, emb = [], []
    for i in range(0, len(content), batch_size):
        out = head(content[i:i + batch_size].to(device), style[i:i + batch_size].to(device))
        logits.append(out.logits.float().cpu())
        emb.append(out.embedding.float().cpu())
    if not logits:
        return np.zeros(0), torch.zeros(0, 0)
    return torch.cat(logits).double().numpy(), torch.cat(emb)


#: Quantile levels of the validation real segments' scores kept in the checkpoint (0, 0.001, ..., 1).
UNIT_QUANTILES = 1001


def real_segment_quantiles(p_fake: np.ndarray, labels: np.ndarray, levels: int = UNIT_QUANTILES) -> list[float]:
    """The calibrated p_fake of the real (label 0) segments at ``levels`` evenly spaced quantile
    levels: the empirical CDF :func:`stylefusion.decision.threshold_for` inverts; [] without reals."""
    real = np.asarray(p_fake, np.float64)[np.asarray(labels) == 0]
    if len(real) < 2:
        return []
    # "higher": each level's value is an observed score at or above it, so a threshold read off
    # these errs on the side of fewer false positives (linear interpolation between order
    # statistics put the tail a little low: 6% instead of 5% at 16 segments on generated data).
    return [round(float(v), 7) for v in np.quantile(real, np.linspace(0.0, 1.0, levels), method="higher")]


def unit_rates(config: StyleFusionConfig, val: Any, seg_labels: np.ndarray, p_cal: np.ndarray
               ) -> tuple[list[float], dict[str, dict[str, Any]]]:
    """The real segments' score quantiles and, per number of segments of a validation video, its
    videos and the FPR / TPR at the threshold for that many (the unit each answer is given at)."""
    from stylefusion.decision import unit_threshold

    quantiles = real_segment_quantiles(p_cal, seg_labels)
    kind, rate = parse_threshold_policy(config.threshold_policy)
    if not quantiles or kind != "fpr":  # one threshold for every video: nothing per unit to report
        return quantiles, {}
    counts = val.segments_per_video.numpy().astype(int)
    v_labels = val.video_labels.numpy().astype(int)
    v_p = val.video_scores(p_cal)
    out: dict[str, dict[str, Any]] = {}
    for n in sorted(set(counts.tolist())):
        if n < 1:
            continue
        t, _ = unit_threshold(quantiles, float(rate), n)
        sel = counts == n
        tpr, fpr = rates_at(v_labels[sel], v_p[sel], t)
        out[str(n)] = {"real": int((v_labels[sel] == 0).sum()), "fake": int((v_labels[sel] == 1).sum()),
                       "threshold": round(t, 6), "fpr": fpr, "tpr": tpr}
    return quantiles, out


def calibrate_head(head: torch.nn.Module, train: Any, val: Any, config: StyleFusionConfig) -> Calibration:
    """Calibrate a trained head (eval mode) on ``val`` (``CachedFeatures``), with ``train`` for the
    out-of-domain statistics and the input-quality limits; the steps of the module docstring."""
    c = config
    head.eval()
    val_logits, val_emb = head_outputs(head, val.content, val.style)
    seg_labels = val.labels.numpy().astype(int)
    # Segment-level fits read only segments whose own label is known, and of a fake video of
    # several people (a multiple-instance bag) its most suspicious segment, the one its answer is.
    inst = val.instances(val_logits)
    inst_labels = seg_labels[inst]
    temperature = fit_temperature(val_logits[inst], inst_labels)
    p_raw, p_cal = sigmoid(val_logits), sigmoid(val_logits / temperature)

    v_labels = val.video_labels.numpy().astype(int)
    v_p = val.video_scores(p_cal)
    threshold, threshold_source = choose_threshold(c.threshold_policy, v_labels, v_p)
    tpr, fpr = rates_at(v_labels, v_p, threshold)

    real_quantiles, by_segments = unit_rates(c, val, seg_labels, p_cal)
    quantile = conformal_quantile(lac_scores(inst_labels, p_cal[inst]), c.conformal_alpha)
    cover = coverage(inst_labels, p_cal[inst], quantile)
    # At the unit answered: a video's answer is its most suspicious segment's, whose p_fake is v_p.
    cover_videos = coverage(v_labels, v_p, quantile)

    _, train_emb = head_outputs(head, train.content, train.style)
    mean, precision = fit_density(EmbeddingDensity.features(train_emb, train.content, train.style))
    density = EmbeddingDensity(mean.numel())
    density.mean.copy_(mean)
    density.precision.copy_(precision)
    val_ood = density(EmbeddingDensity.features(val_emb, val.content, val.style)).double().numpy()
    ood_threshold = float(np.percentile(val_ood, OOD_PERCENTILE))

    limits, quality_source = quality_limits_from(train.quality, c)
    history_limits, history_source = history_limits_from(train.records)
    record = CalibrationRecord(
        temperature=temperature, val_tpr=tpr, val_fpr=fpr,
        val_videos={"real": int((v_labels == 0).sum()), "fake": int((v_labels == 1).sum())},
        conformal_quantile=quantile, conformal_n=len(inst), coverage_val=cover, coverage_val_videos=cover_videos,
        ood_threshold=ood_threshold, ood_percentile=OOD_PERCENTILE, ood_val_flagged=float((val_ood > ood_threshold).mean()),
        ood_train_segments=len(train_emb), quality_source=quality_source, history_source=history_source,
        ece_before=expected_calibration_error(inst_labels, p_raw[inst]),
        ece_after=expected_calibration_error(inst_labels, p_cal[inst]),
        brier_before=brier_score(inst_labels, p_raw[inst]), brier_after=brier_score(inst_labels, p_cal[inst]),
        real_segment_quantiles=real_quantiles, val_by_segments=by_segments)
    band = conformal_band(quantile, threshold)
    logger.info("calibration: temperature %.3f (ECE %.4f -> %.4f), threshold %.4f (%s; val TPR %s FPR %s), "
                "conformal q %.4f (coverage %.3f; uncertain band [%.4f, %.4f]), ood threshold %.3f", temperature,
                record.ece_before, record.ece_after, threshold, threshold_source, tpr, fpr, quantile, cover,
                band[0], band[1], ood_threshold)
    return Calibration(record, threshold, threshold_source, limits,
                       {"ood.mean": mean, "ood.precision": precision}, v_p, history_limits)


__all__ = ["Calibration", "ECE_BINS", "OOD_PERCENTILE", "UNIT_QUANTILES", "real_segment_quantiles", "unit_rates", "brier_score", "calibrate_head", "choose_threshold",
           "conformal_quantile", "coverage", "expected_calibration_error", "fit_density", "fit_temperature",
           "head_outputs", "lac_scores", "prediction_sets", "quality_limits_from", "rates_at", "reliability",
           "sigmoid", "threshold_at_fpr"]
